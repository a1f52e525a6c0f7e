"""Parity with containerd's built-in CRI: the same requests, the same pod (issue: drop-in parity).

Every case of ``tests/parity/matrix.py`` is sent to criproxy and to the built-in CRI on the one
test containerd. For each pod sandbox and container the test compares, after normalising what
must differ (IDs, namespaces, runtime dirs, netns paths, pod IPs): the error code of any refusal,
the OCI spec and container record in containerd, the CRI status, and what the probe saw inside.
Each difference must be listed in docs/parity.md with its reason, and each entry there must still
occur; the report printed names how many listed differences were seen.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from criproxy.parity import Difference, diff, judge, parse_catalogue
from criproxy.parity.diff import seccomp_digest
from criproxy.parity.probe import PROBE_RULES
from criproxy.protos import cri as pb
from tests.harness import Dir, ImageConfig, build_image, busybox_layers
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.parity import runner
from tests.parity.conftest import SUMMARY
from tests.parity.matrix import POD_CASES, SECCOMP_PROFILE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "docs" / "parity.md"


@pytest.fixture(scope="module")
def images(testenv: Environment) -> dict[str, str]:
    cfg = build_image("cfgimg", "v1", {"work": Dir(0o777)},
                      ImageConfig(entrypoint=["/bin/sh", "-c"], cmd=["echo image-cmd"], user="app",
                                  env=["PATH=/usr/local/bin:/usr/bin:/bin", "FROM_IMAGE=1"], workdir="/work"),
                      base=busybox_layers())
    vol = build_image("volimg", "v1", {"data": Dir(0o755)},
                      ImageConfig(cmd=["sh"], volumes=["/data", "/cache"]), base=busybox_layers())
    return {"busybox": testenv.busybox_image, "cfgimg": testenv.push(cfg), "volimg": testenv.push(vol)}


@pytest.fixture
def sides(testenv: Environment, criproxy: CriproxyProcess, builtin_cri: CriClient, cri: CriClient,
          images: dict[str, str]) -> Iterator[tuple[runner.Side, runner.Side]]:
    logs = testenv.scratch_dir("parity-logs")
    ctrd = testenv.ctrd
    left = runner.Side("criproxy", cri, str(ctrd.address), criproxy.namespace,
                       [str(criproxy.base), str(criproxy.root), str(criproxy.state), str(criproxy.netns_dir)],
                       logs / "criproxy", images)
    right = runner.Side("builtin", builtin_cri, str(ctrd.address), "k8s.io",
                        [str(ctrd.root / "io.containerd.grpc.v1.cri"), str(ctrd.state / "io.containerd.grpc.v1.cri")],
                        logs / "builtin", images)
    for side in (left, right):
        for ref in images.values():
            side.client.image.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
    yield left, right


def _scratch(testenv: Environment) -> Path:
    d = testenv.scratch_dir("parity")
    (d / "seccomp.json").write_text(SECCOMP_PROFILE)
    (d / "mount-dir").mkdir()
    (d / "mount-dir" / "hello").write_text("hi\n")
    (d / "mount-file").write_text("file\n")
    return d


def _compare(left: dict[str, Any], right: dict[str, Any]) -> list[Difference]:
    errors = diff(left["error"], right["error"], "error")
    if errors or left["error"]:
        return errors  # refused on one side (the rest is meaningless) or on both alike
    out = diff(left["spec"], right["spec"], "spec") + diff(left["record"], right["record"], "record")
    out += diff(left["status"], right["status"], "status")
    if "probe" in left or "probe" in right:
        out += diff(left.get("probe", {}), right.get("probe", {}), "probe", rules=PROBE_RULES)
    return out


@pytest.mark.timeout(900)  # 14 pods, ~60 containers per side: ~1-2 min, several on a loaded host
def test_parity_with_builtin_cri(testenv: Environment, sides: tuple[runner.Side, runner.Side]) -> None:
    left, right = sides
    scratch = _scratch(testenv)
    found: list[tuple[str, Difference]] = []
    digests: list[str] = []
    blind: list[str] = []
    only = os.environ.get("PARITY_CASES")  # while developing: a comma-separated subset of pods
    dump = REPO / ".testenv" / f"parity-docs-{testenv.ctrd.release}"
    for case in POD_CASES:
        if only and case.name not in only.split(","):
            continue
        uid = str(uuid.uuid4())
        lres, rres = runner.PodResult(left, case), runner.PodResult(right, case)
        with ThreadPoolExecutor(2) as pool:
            try:
                list(pool.map(runner.run_pod, (lres, rres), (uid, uid), (scratch, scratch)))
                list(pool.map(runner.wait_probes, (lres, rres)))
                runner.fetch(lres, rres)
                for name in ["sandbox", *(c.name for c in case.containers)]:
                    ldoc, rdoc = runner.documents(lres, name), runner.documents(rres, name)
                    dump.mkdir(parents=True, exist_ok=True)
                    for side, doc in (("criproxy", ldoc), ("builtin", rdoc)):
                        (dump / f"{case.name}.{name}.{side}.json").write_text(json.dumps(doc, indent=1))
                    found += [(f"{case.name}/{name}", d) for d in _compare(ldoc, rdoc)]
                    if not ldoc["error"] and not rdoc["error"] and "probe" in ldoc \
                            and not (ldoc["probe"].get("complete") or rdoc["probe"].get("complete")):
                        blind.append(f"{case.name}/{name}")  # equal, but only because both saw nothing
                    if ldoc["spec"] or rdoc["spec"]:
                        ld, rd = seccomp_digest(ldoc["spec"]), seccomp_digest(rdoc["spec"])
                        if ld != rd:
                            digests.append(f"{case.name}/{name}: seccomp criproxy {ld} builtin {rd}")
            finally:
                list(pool.map(runner.cleanup, (lres, rres)))
                runner.remove_cgroup_parent(uid)

    catalogue = parse_catalogue(CATALOGUE.read_text())
    release = testenv.ctrd.release
    verdict = judge(found, catalogue, release)
    lines = [f"parity (containerd {release}): {len(found)} differences in {len(POD_CASES)} pods; "
             f"{sum(len(v) for v in verdict.matched.values())} listed, matched by {len(verdict.matched)} of "
             f"{sum(e.applies_to(release) for e in catalogue)} entries of docs/parity.md; "
             f"{len(verdict.unexpected)} unexpected; "
             f"{len(verdict.unused)} entries unused", *digests]
    for case, d in verdict.unexpected:
        lines.append(f"UNEXPECTED {case}: {d.render(width=1500)}")
    for entry in verdict.unused:
        lines.append(f"UNUSED ENTRY {entry}")
    report = "\n".join(lines)
    report_name = f"parity-report-{release}.txt"
    (REPO / ".testenv" / report_name).write_text(report + "\n" + "\n".join(
        f"listed {c}: {d.render(width=1500)}" for v in verdict.matched.values() for c, d in v) + "\n")
    SUMMARY[:] = [lines[0], f"parity: full report in .testenv/{report_name}"]
    assert not verdict.unexpected, report
    assert not blind, f"probe output incomplete on both sides: {blind}"
    assert only or not verdict.unused, report  # a subset of pods leaves other entries unused
