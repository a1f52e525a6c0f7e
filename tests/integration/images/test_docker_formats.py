"""Docker schema2 manifests and Docker manifest lists (what most public images still are)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

from criproxy.protos import cri
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.proc import http_get, run
from tests.harness.registry_tools import index_layout

LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def _push_v2s2(testenv: Environment, oci_ref: str, name: str, all_platforms: bool = False) -> str:
    ref = f"{testenv.registry_host}/{name}:v2s2"
    argv = ["skopeo", "--insecure-policy", "copy", "--quiet", "--format", "v2s2", "--dest-tls-verify=false"]
    run([*argv, *(["--all"] if all_platforms else []), oci_ref, f"docker://{ref}"])
    return ref


def _get(testenv: Environment, name: str, ref: str, accept: str) -> dict[str, object]:
    url = f"http://{testenv.registry_host}/v2/{name}/manifests/{ref}"
    doc: dict[str, object] = json.loads(http_get(url, headers={"Accept": accept}))
    return doc


def _pull(proc: CriproxyProcess, ref: str) -> str:
    with proc.client() as c:
        return str(c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref))).image_ref)


def test_docker_schema2_image(testenv: Environment, unique_name: Callable[[str], str],
                              criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ns = f"img-{uuid.uuid4().hex[:8]}"
    name = unique_name("docker")
    ref = _push_v2s2(testenv, testenv.images["busybox"].oci_ref, name)
    proc = criproxy_factory(namespace=ns)
    image_id = _pull(proc, ref)
    assert image_id == _get(testenv, name, "v2s2", SCHEMA2)["config"]["digest"]  # type: ignore[index]
    assert SCHEMA2 in testenv.ctr("images", "ls", namespace=ns)
    out = testenv.ctr("run", "--rm", ref, f"d-{uuid.uuid4().hex[:8]}", "echo", "docker-ok", namespace=ns)
    assert out.strip() == "docker-ok"


def test_docker_manifest_list_picks_amd64(testenv: Environment, tmp_path: Path, unique_name: Callable[[str], str],
                                          criproxy_factory: Callable[..., CriproxyProcess]) -> None:
    ns = f"img-{uuid.uuid4().hex[:8]}"
    name = unique_name("dlist")
    layout, _ = index_layout(testenv.images["busybox"], tmp_path / "multi")
    ref = _push_v2s2(testenv, layout.oci_ref, name, all_platforms=True)
    listing = _get(testenv, name, "v2s2", LIST)
    assert listing["mediaType"] == LIST
    entries = {m["platform"]["architecture"]: m["digest"] for m in listing["manifests"]}  # type: ignore[attr-defined]
    amd64 = _get(testenv, name, entries["amd64"], SCHEMA2)
    proc = criproxy_factory(namespace=ns)
    assert _pull(proc, ref) == amd64["config"]["digest"]  # type: ignore[index]
    content = [line.split()[0] for line in testenv.ctr("content", "ls", namespace=ns).splitlines()[1:]]
    assert entries["amd64"] in content and entries["arm64"] not in content and entries["arm"] not in content
