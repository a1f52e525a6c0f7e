"""CRI v1 features containerd 2.x serves: recursive read-only mounts, the security context checks
and supplemental groups policy, CDI devices, per-handler options — each checked from inside the
container, and its bad input refused with INVALID_ARGUMENT before anything is made."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness.client import CriClient
from tests.harness.env import Environment
from tests.integration.containers.conftest import Pod, container_config, pod_config

SLEEP = ["sleep", "1000"]


def _host_rro() -> bool:
    """What this host can do, found without criproxy: runc lists "rro" and the kernel is 5.12+."""
    out = subprocess.run(["runc", "features"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return False
    major, minor = (int(x) for x in Path("/proc/sys/kernel/osrelease").read_text().split(".")[:2])
    return "rro" in json.loads(out.stdout).get("mountOptions", []) and (major, minor) >= (5, 12)


@pytest.fixture
def dir_with_submount(testenv: Environment) -> Iterator[Path]:
    """A host dir with a writable tmpfs mounted below it: a plain read-only bind leaves that
    submount writable, a recursive one does not."""
    top = testenv.scratch_dir("rro")
    (top / "sub").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "rrosub", str(top / "sub")], check=True)
    yield top
    subprocess.run(["umount", "-l", str(top / "sub")], check=False)


def _mount(host: Path, **kw: object) -> cri.Mount:
    return cri.Mount(container_path="/data", host_path=str(host), **kw)  # type: ignore[arg-type]


def test_status_reports_rro_and_supplemental_groups_policy(cri: CriClient) -> None:
    resp = cri.runtime.Status(cri.pb.StatusRequest())
    handlers = {h.name: h.features for h in resp.runtime_handlers}
    assert handlers[""].recursive_read_only_mounts is _host_rro()
    assert handlers["runc"].recursive_read_only_mounts is _host_rro()
    assert not handlers[""].user_namespaces
    assert resp.features.supplemental_groups_policy


def test_recursive_read_only_mount(pod: Pod, dir_with_submount: Path) -> None:
    if not _host_rro():
        pytest.skip("runc or the kernel lacks recursive read-only mounts")
    ro = pod.run(container_config(pod.image, name="ro", command=SLEEP,
                                  mounts=[_mount(dir_with_submount, readonly=True)]))
    rro = pod.run(container_config(pod.image, name="rro", command=SLEEP,
                                   mounts=[_mount(dir_with_submount, readonly=True, recursive_read_only=True)]))
    # a plain read-only bind: the top is read-only, the submount below is not
    assert pod.exec(ro, "touch", "/data/x").exit_code != 0
    assert pod.exec(ro, "touch", "/data/sub/x").exit_code == 0
    # recursive: neither is writable, and the submount is mounted ro
    assert pod.exec(rro, "touch", "/data/y").exit_code != 0
    assert pod.exec(rro, "touch", "/data/sub/y").exit_code != 0
    sub = pod.sh(rro, "grep ' /data/sub ' /proc/self/mountinfo").split()
    assert sub[5].split(",")[0] == "ro"


@pytest.mark.parametrize("kw", [dict(readonly=False, recursive_read_only=True),
                                dict(readonly=True, recursive_read_only=True,
                                     propagation=cri.PROPAGATION_HOST_TO_CONTAINER)])
def test_recursive_read_only_bad_input(pod: Pod, testenv: Environment, ctr: object, kw: dict[str, object]) -> None:
    before = ctr("containers", "ls", "-q")  # type: ignore[operator]
    cfg = container_config(pod.image, name="bad", command=SLEEP, mounts=[_mount(testenv.scratch_dir("b"), **kw)])
    with pytest.raises(grpc.RpcError) as e:
        pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "recursive read-only" in (e.value.details() or "")
    assert ctr("containers", "ls", "-q") == before  # type: ignore[operator]


def test_run_as_group_without_user_is_invalid(pod: Pod, ctr: object) -> None:
    before = ctr("containers", "ls", "-q")  # type: ignore[operator]
    cfg = container_config(pod.image, name="g", command=SLEEP)
    cfg.linux.security_context.run_as_group.value = 2000
    with pytest.raises(grpc.RpcError) as e:
        pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "run_as_group" in (e.value.details() or "")
    assert ctr("containers", "ls", "-q") == before  # type: ignore[operator]


@pytest.mark.parametrize(("policy", "groups", "id_groups"), [
    (cri.Merge, [1000, 2000, 3000], "groups=1000(app),2000(extra),3000"),
    (cri.Strict, [1000, 3000], "groups=1000(app),3000"),
])
def test_supplemental_groups_policy(pod: Pod, policy: int, groups: list[int], id_groups: str) -> None:
    """busybox's user app (1000:1000) is a member of group extra (2000) in the image's /etc/group:
    Merge adds it, Strict keeps only the primary group and the config's own."""
    cfg = container_config(pod.image, name="sg", command=SLEEP)
    sc = cfg.linux.security_context
    sc.run_as_username, sc.supplemental_groups_policy = "app", policy  # type: ignore[assignment]
    sc.supplemental_groups[:] = [3000]
    cid = pod.run(cfg)
    assert pod.sh(cid, "id").strip().endswith(id_groups)
    user = pod.status(cid).user.linux
    assert (user.uid, user.gid, sorted(user.supplemental_groups)) == (1000, 1000, groups)
    status = pod.sh(cid, "grep ^Groups: /proc/1/status").split()[1:]
    assert sorted(int(g) for g in status) == groups


# ---- CDI devices ------------------------------------------------------------------------------------

@pytest.fixture
def cdi_env(testenv: Environment) -> dict[str, Path]:
    """Two CDI spec dirs (JSON in the first, YAML in the second), a device node that is a copy of
    /dev/null's major:minor, a dir to mount and where a createRuntime hook writes. The YAML device is
    c 240:7 (a local/experimental major no driver has: opening it fails with ENXIO once the device
    cgroup lets it through, EPERM while it does not), given in full so no host node is needed."""
    base = testenv.scratch_dir("cdi")
    dirs = {k: base / k for k in ("etc", "run", "share", "dev")}
    for d in dirs.values():
        d.mkdir()
    node = dirs["dev"] / "cdinull"
    st = Path("/dev/null").stat()
    os.mknod(node, 0o666 | stat.S_IFCHR, st.st_rdev)
    (dirs["share"] / "f").write_text("from cdi mount\n")
    hook_out = base / "hook-ran"
    (dirs["etc"] / "test.json").write_text(json.dumps({
        "cdiVersion": "0.6.0", "kind": "example.com/test",
        "containerEdits": {"env": ["CDI_SPEC=yes"]},
        "devices": [{"name": "null1", "containerEdits": {
            "env": ["CDI_A=1"],
            "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": str(node), "permissions": "rw"}],
            "mounts": [{"hostPath": str(dirs["share"]), "containerPath": "/cdi-share", "type": "bind",
                        "options": ["rbind", "ro"]}],
            "hooks": [{"hookName": "createRuntime", "path": "/bin/sh",
                       "args": ["sh", "-c", f"echo ran > {hook_out}"]}],
        }}]}))
    (dirs["run"] / "yaml.yaml").write_text("""\
cdiVersion: "0.7.0"
kind: example.com/yaml
devices:
  - name: y1
    containerEdits:
      env: ["CDI_Y=2"]
      deviceNodes:
        - path: /dev/cdi-y
          type: c
          major: 240
          minor: 7
          fileMode: 384
          permissions: rw
      additionalGids: [4242]
""")
    (dirs["run"] / "broken.json").write_text("{not json")
    return {**dirs, "hook": hook_out}


@pytest.fixture
def cdi_pod(criproxy_factory: object, testenv: Environment, busybox: str, cdi_env: dict[str, Path]) -> Iterator[Pod]:
    proc = criproxy_factory(extra_args=["--cdi-spec-dir", str(cdi_env["etc"]),  # type: ignore[operator]
                                        "--cdi-spec-dir", str(cdi_env["run"])])
    with proc.client() as client:
        pod = Pod(client, pod_config(testenv.scratch_dir("logs"), "cdi"), busybox)
        try:
            yield pod
        finally:
            pod.cleanup()


def test_cdi_devices_from_field_and_annotation(cdi_pod: Pod, cdi_env: dict[str, Path]) -> None:
    cfg = container_config(cdi_pod.image, command=SLEEP, CDI_devices=[cri.CDIDevice(name="example.com/test=null1")],
                           annotations={"cdi.k8s.io/extra": "example.com/yaml=y1"})
    cid = cdi_pod.run(cfg)
    # device nodes: made with the host node's major:minor, usable (the cgroup rule allows them)
    rdev = Path("/dev/null").stat().st_rdev
    listing = cdi_pod.sh(cid, "ls -ln /dev/cdi-null /dev/cdi-y").splitlines()
    assert re.search(rf" {os.major(rdev)}, +{os.minor(rdev)} ", listing[0]) and listing[0].startswith("c"), listing
    assert re.search(r" 240, +7 ", listing[1]) and listing[1].startswith("crw-------"), listing
    cdi_pod.sh(cid, "echo x > /dev/cdi-null && head -c 1 /dev/cdi-null | wc -c")
    opened = cdi_pod.exec(cid, "sh", "-c", "cat /dev/cdi-y")
    assert opened.exit_code != 0 and b"Operation not permitted" not in opened.stderr, opened.stderr
    # env from the spec's own edits and from each device
    env = cdi_pod.sh(cid, "env")
    assert {"CDI_SPEC=yes", "CDI_A=1", "CDI_Y=2"} <= set(env.split())
    # the mount (read-only as the spec asks), the hook (ran on the host), the extra group
    assert cdi_pod.sh(cid, "cat /cdi-share/f") == "from cdi mount\n"
    assert cdi_pod.exec(cid, "touch", "/cdi-share/g").exit_code != 0
    assert cdi_env["hook"].read_text() == "ran\n"
    groups = cdi_pod.sh(cid, "grep ^Groups: /proc/1/status").split()[1:]
    assert "4242" in groups
    # the device cgroup (v1: the devices controller's list) allows the node with the spec's permissions
    status = cdi_pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True))
    pid = int(json.loads(status.info["info"])["pid"])
    cgroups = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    if "devices" in cgroups:
        allowed = (Path("/sys/fs/cgroup/devices") / cgroups["devices"].lstrip("/") / "devices.list").read_text()
        assert "c 240:7 rw\n" in allowed, allowed


def test_cdi_unknown_device_is_invalid(cdi_pod: Pod, ctr: object) -> None:
    before = ctr("containers", "ls", "-q")  # type: ignore[operator]
    cfg = container_config(cdi_pod.image, command=SLEEP, CDI_devices=[cri.CDIDevice(name="example.com/test=nope")])
    with pytest.raises(grpc.RpcError) as e:
        cdi_pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    details = e.value.details() or ""
    assert "example.com/test=nope" in details and "broken.json" in details, details
    assert ctr("containers", "ls", "-q") == before  # type: ignore[operator]


@pytest.mark.parametrize("annotations", [{"cdi.k8s.io/x": "not-a-device"}, {"cdi.k8s.io/": "example.com/test=null1"}])
def test_cdi_malformed_request_is_invalid(cdi_pod: Pod, annotations: dict[str, str]) -> None:
    cfg = container_config(cdi_pod.image, command=SLEEP, annotations=annotations)
    with pytest.raises(grpc.RpcError) as e:
        cdi_pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "CDI" in (e.value.details() or "")


# ---- runtime handler options ------------------------------------------------------------------------

def test_handler_base_runtime_spec(criproxy_factory: object, testenv: Environment, busybox: str,
                                   tmp_path: Path) -> None:
    """A handler's base spec is where its containers' specs start: its rlimits, env and extra mount
    reach the process; a pod of another handler keeps the default spec."""
    base = {"ociVersion": "1.1.0",
            "process": {"env": ["PATH=/usr/bin:/bin", "FROM_BASE=yes"],
                        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4321, "soft": 1234}]},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec"]},
                       {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                       {"destination": "/base-tmp", "type": "tmpfs", "source": "basetmp", "options": ["size=1m"]}]}
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "criproxy.toml").write_text(
        f'[runtime_handlers.based]\nbase_runtime_spec = "{tmp_path / "base.json"}"\n[runtime_handlers.runc]\n')
    proc = criproxy_factory(extra_args=["--config", str(tmp_path / "criproxy.toml")])  # type: ignore[operator]
    logs = testenv.scratch_dir("logs")
    with proc.client() as client:
        based, plain = Pod(client, pod_config(logs, "based"), busybox, handler="based"), None
        try:
            plain = Pod(client, pod_config(logs, "plain"), busybox, handler="runc")
            cid = based.run(container_config(busybox, command=SLEEP))
            # The container's own process (PID 1), not an exec'd shell: with some runc/shim pairs an
            # exec'd process gets its soft NOFILE raised to the hard limit (seen once on 2.1).
            limits = based.sh(cid, "grep 'Max open files' /proc/1/limits").split()
            assert limits[3:5] == ["1234", "4321"], limits
            assert "FROM_BASE=yes" in based.sh(cid, "env").split()
            assert " - tmpfs basetmp " in based.sh(cid, "grep ' /base-tmp ' /proc/self/mountinfo")
            other = plain.run(container_config(busybox, command=SLEEP))
            assert "FROM_BASE=yes" not in plain.sh(other, "env").split()
            assert plain.exec(other, "test", "-e", "/base-tmp").exit_code != 0
            assert plain.sh(other, "ulimit -n").strip() != "1234"
        finally:
            based.cleanup()
            if plain is not None:
                plain.cleanup()


def _native_snapshots(ctr: object) -> set[str]:
    out = ctr("snapshots", "--snapshotter", "native", "ls")  # type: ignore[operator]
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def test_handler_snapshotter(criproxy_factory: object, testenv: Environment, busybox: str, tmp_path: Path,
                             ctr: object) -> None:
    """A handler with ``snapshotter = "native"``: PullImage for it unpacks there, its pods' pause and
    containers get their root filesystems from it (not an overlay), and removal cleans it up."""
    (tmp_path / "criproxy.toml").write_text('[runtime_handlers.nat]\nsnapshotter = "native"\n[runtime_handlers.runc]\n')
    proc = criproxy_factory(extra_args=["--config", str(tmp_path / "criproxy.toml")],  # type: ignore[operator]
                            namespace="criproxy-snap")
    ctrn = lambda *a: ctr(*a, namespace="criproxy-snap")  # type: ignore[operator]  # noqa: E731
    logs = testenv.scratch_dir("logs")
    with proc.client() as client:
        with pytest.raises(grpc.RpcError) as e:
            client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=busybox, runtime_handler="nope")))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=busybox)), timeout=120)
        assert not _native_snapshots(ctrn)                      # the global snapshotter only
        pod = Pod(client, pod_config(logs, "nat"), busybox, handler="nat")
        try:
            # busybox is not unpacked for native yet: a clear NOT_FOUND naming the snapshotter
            with pytest.raises(grpc.RpcError) as e:
                pod.create(container_config(busybox, command=SLEEP))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND and "native" in (e.value.details() or "")
            client.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=busybox), sandbox_config=cri.
                                   PodSandboxConfig(annotations={"io.kubernetes.cri.runtime-handler": "nat"})),
                                   timeout=120)
            cid = pod.run(container_config(busybox, command=SLEEP))
            assert {pod.id, cid} <= _native_snapshots(ctrn)
            assert json.loads(ctrn("containers", "info", cid))["Snapshotter"] == "native"
            root = pod.sh(cid, "awk '$5 == \"/\"' /proc/self/mountinfo")
            assert root and " - overlay " not in root, root
        finally:
            pod.cleanup()
        assert not {pod.id, cid} & _native_snapshots(ctrn)
