"""The container config as the process sees it: args, env, workdir, user, mounts and propagation,
capabilities, privileged, readonly rootfs, seccomp, limits and OOM — read from inside the container
(/proc/self/status, mountinfo, cgroup files) and on the host."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from criproxy.protos import cri
from tests.harness import Dir, ImageConfig, build_image, busybox_layers
from tests.harness.criproxy import CriproxyProcess
from tests.harness.env import Environment
from tests.harness.images import DEFAULT_PATH
from tests.integration.containers.conftest import Pod, container_config, read_log, wait_for

SLEEP = ["sleep", "1000"]


@pytest.fixture(scope="module")
def cfg_image(testenv: Environment, busybox: str, criproxy_proc: CriproxyProcess) -> str:
    """An image with entrypoint, cmd, env, user, workdir and stop signal of its own."""
    layout = build_image("cfgimg", "v1", {"work": Dir(0o777)},
                         ImageConfig(entrypoint=["/bin/sh", "-c"], cmd=["echo image-cmd"], user="app",
                                     env=[DEFAULT_PATH, "FROM_IMAGE=1", "OVERRIDE=image"], workdir="/work",
                                     stop_signal="SIGUSR1"), base=busybox_layers())
    ref = testenv.push(layout)
    criproxy_proc.ensure_running()
    with criproxy_proc.client() as c:
        c.image.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=ref)), timeout=120)
    return ref


def status_field(text: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(key + ":"))


def test_image_defaults_args_env_workdir_user(pod: Pod, cfg_image: str) -> None:
    cid = pod.run(container_config(cfg_image))
    pod.wait_exit(cid)
    assert read_log(pod.log()) == [("stdout", "F", "image-cmd")]
    cfg = container_config(cfg_image, name="d", args=["echo $FROM_IMAGE $OVERRIDE $HOSTNAME; pwd; id"],
                           envs=[cri.KeyValue(key="OVERRIDE", value=b"config")])
    cid = pod.run(cfg)
    assert pod.wait_exit(cid).exit_code == 0
    lines = [t for _s, _tag, t in read_log(pod.log("d"))]
    assert lines[0] == "1 config pod" and lines[1] == "/work"
    assert lines[2].startswith("uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)")
    st = pod.status(cid)
    assert (st.user.linux.uid, st.user.linux.gid, list(st.user.linux.supplemental_groups)) == (1000, 1000,
                                                                                               [1000, 2000])


def test_command_overrides_entrypoint_and_workdir(pod: Pod, cfg_image: str) -> None:
    cid = pod.run(container_config(cfg_image, command=["pwd"], working_dir="/etc"))
    pod.wait_exit(cid)
    assert read_log(pod.log()) == [("stdout", "F", "/etc")]


def test_relative_working_dir_is_refused_before_anything_is_made(pod: Pod, cfg_image: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        pod.create(container_config(cfg_image, name="relcwd", command=["pwd"], working_dir="etc"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    listed = pod.rt.ListContainers(cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=pod.id)))
    assert [c.metadata.name for c in listed.containers if c.metadata.name == "relcwd"] == []


def test_image_stop_signal_is_used(pod: Pod, cfg_image: str) -> None:
    script = "trap 'exit 0' USR1; touch /work/trapped; while true; do sleep 0.1; done"
    cid = pod.run(container_config(cfg_image, args=[script]))
    # The shell is PID 1 of its namespace: a USR1 arriving before the trap is set is dropped, not fatal.
    wait_for(lambda: pod.exec(cid, "test", "-e", "/work/trapped").exit_code == 0, 20, what="the USR1 trap")
    pod.rt.StopContainer(cri.StopContainerRequest(container_id=cid, timeout=30), timeout=20)
    assert pod.status(cid).reason == "Completed"


@pytest.mark.parametrize(("sc", "expected"), [
    (cri.LinuxContainerSecurityContext(run_as_user=cri.Int64Value(value=1000)), "uid=1000(app) gid=1000(app)"),
    (cri.LinuxContainerSecurityContext(run_as_username="app", run_as_group=cri.Int64Value(value=2000),
                                       supplemental_groups=[3000]),
     "uid=1000(app) gid=2000(extra) groups=2000(extra),3000"),
    (cri.LinuxContainerSecurityContext(run_as_user=cri.Int64Value(value=4321)), "uid=4321 gid=0(root)"),
])
def test_user(pod: Pod, sc: cri.LinuxContainerSecurityContext, expected: str) -> None:
    cfg = container_config(pod.image, command=SLEEP)
    cfg.linux.security_context.MergeFrom(sc)
    cid = pod.run(cfg)
    assert pod.sh(cid, "id").startswith(expected)


def test_pod_files_and_hostname(pod: Pod) -> None:
    cid = pod.run(command=SLEEP)
    assert pod.sh(cid, "hostname").strip() == "pod"
    assert pod.sh(cid, "cat /etc/hostname").strip() == "pod"
    assert "localhost" in pod.sh(cid, "cat /etc/hosts")


def test_readonly_rootfs(pod: Pod) -> None:
    cfg = container_config(pod.image, command=SLEEP)
    cfg.linux.security_context.readonly_rootfs = True
    cid = pod.run(cfg)
    resp = pod.exec(cid, "touch", "/x")
    assert resp.exit_code != 0 and b"Read-only" in resp.stderr
    assert pod.exec(cid, "touch", "/dev/shm/x").exit_code == 0


def _caps(pod: Pod, cid: str) -> int:
    return int(status_field(pod.sh(cid, "cat /proc/self/status"), "CapEff"), 16)


def test_capabilities_add_drop(pod: Pod) -> None:
    default = pod.run(container_config(pod.image, name="a", command=SLEEP))
    cfg = container_config(pod.image, name="b", command=SLEEP)
    cfg.linux.security_context.capabilities.add_capabilities.append("NET_ADMIN")
    cfg.linux.security_context.capabilities.drop_capabilities.append("CHOWN")
    changed = pod.run(cfg)
    none = container_config(pod.image, name="c", command=SLEEP)
    none.linux.security_context.capabilities.drop_capabilities.append("ALL")
    dropped = pod.run(none)
    net_admin, chown = 1 << 12, 1 << 0
    assert _caps(pod, default) & chown and not _caps(pod, default) & net_admin
    assert _caps(pod, changed) & net_admin and not _caps(pod, changed) & chown
    assert _caps(pod, dropped) == 0
    assert pod.exec(dropped, "chown", "1:1", "/tmp").exit_code != 0


def test_no_new_privs_and_default_seccomp(pod: Pod) -> None:
    cfg = container_config(pod.image, command=SLEEP)
    cfg.linux.security_context.no_new_privs = True
    cfg.linux.security_context.seccomp.profile_type = cri.SecurityProfile.RuntimeDefault
    cid = pod.run(cfg)
    status = pod.sh(cid, "cat /proc/self/status")
    assert status_field(status, "NoNewPrivs") == "1" and status_field(status, "Seccomp") == "2"
    assert pod.exec(cid, "unshare", "-n", "true").exit_code != 0
    plain = pod.run(container_config(pod.image, name="u", command=SLEEP))
    assert status_field(pod.sh(plain, "cat /proc/self/status"), "Seccomp") == "0"


def test_privileged(make_pod: object) -> None:
    pod = make_pod("priv")  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as e:
        cfg = container_config(pod.image, command=SLEEP)
        cfg.linux.security_context.privileged = True
        pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ppod = make_pod("priv2", linux=cri.LinuxPodSandboxConfig(  # type: ignore[operator]
        security_context=cri.LinuxSandboxSecurityContext(privileged=True)))
    cfg = container_config(ppod.image, command=SLEEP)
    cfg.linux.security_context.privileged = True
    cid = ppod.run(cfg)
    assert _caps(ppod, cid) & (1 << 21)                   # CAP_SYS_ADMIN
    assert ppod.exec(cid, "sh", "-c", "mkdir -p /m && mount -t tmpfs t /m").exit_code == 0
    assert ppod.sh(cid, "grep ' /sys ' /proc/self/mountinfo").split()[5].startswith("rw")
    assert int(ppod.sh(cid, "ls /dev | wc -l")) > 20                 # the host's devices


def test_devices(pod: Pod) -> None:
    cfg = container_config(pod.image, command=SLEEP,
                           devices=[cri.Device(container_path="/dev/mynull", host_path="/dev/null", permissions="rwm")])
    cid = pod.run(cfg)
    assert pod.sh(cid, "echo x > /dev/mynull && ls -l /dev/mynull").startswith("c")


@pytest.fixture
def shared_dir(testenv: Environment) -> Iterator[Path]:
    """A host directory that is its own shared mount (what bidirectional propagation needs)."""
    d = testenv.scratch_dir("shared")
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    subprocess.run(["mount", "--make-shared", str(d)], check=True)
    yield d
    subprocess.run(["umount", "-R", "-l", str(d)], check=False)


def _mount_cfg(pod: Pod, host: Path, prop: int, name: str, privileged: bool = False,
               readonly: bool = False) -> cri.ContainerConfig:
    cfg = container_config(pod.image, name=name, command=SLEEP, mounts=[cri.Mount(
        container_path="/data", host_path=str(host), propagation=prop, readonly=readonly)])  # type: ignore[arg-type]
    cfg.linux.security_context.privileged = privileged
    return cfg


def test_bind_mounts_and_propagation(make_pod: object, shared_dir: Path) -> None:
    pod = make_pod("prop", linux=cri.LinuxPodSandboxConfig(  # type: ignore[operator]
        security_context=cri.LinuxSandboxSecurityContext(privileged=True)))
    (shared_dir / "hello").write_text("from host\n")
    private = pod.run(_mount_cfg(pod, shared_dir, cri.PROPAGATION_PRIVATE, "p", readonly=True))
    slave = pod.run(_mount_cfg(pod, shared_dir, cri.PROPAGATION_HOST_TO_CONTAINER, "s"))
    shared = pod.run(_mount_cfg(pod, shared_dir, cri.PROPAGATION_BIDIRECTIONAL, "b", privileged=True))
    assert pod.sh(private, "cat /data/hello") == "from host\n"
    assert pod.exec(private, "touch", "/data/x").exit_code != 0           # readonly
    # host → container: a mount made on the host after start shows in rslave and rshared, not private
    sub = shared_dir / "fromhost"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "fromhost", str(sub)], check=True)
    (sub / "f").write_text("x")
    assert pod.exec(slave, "cat", "/data/fromhost/f").stdout == b"x"
    assert pod.exec(shared, "cat", "/data/fromhost/f").stdout == b"x"
    assert pod.exec(private, "cat", "/data/fromhost/f").exit_code != 0
    # container → host: only the bidirectional mount propagates back
    pod.sh(shared, "mkdir -p /data/fromctr && mount -t tmpfs fromctr /data/fromctr && echo y > /data/fromctr/g")
    assert wait_for(lambda: (shared_dir / "fromctr" / "g").exists(), timeout=5, what="propagation to host")
    opts = pod.sh(shared, "grep ' /data ' /proc/self/mountinfo")
    assert "shared:" in opts


def test_missing_host_path_is_created(pod: Pod, testenv: Environment) -> None:
    host = testenv.scratch_dir("m") / "new" / "dir"
    cid = pod.run(_mount_cfg(pod, host, cri.PROPAGATION_PRIVATE, "m"))
    pod.sh(cid, "echo hi > /data/f")
    assert (host / "f").read_text() == "hi\n"


def test_rshared_needs_shared_host_mount(pod: Pod, testenv: Environment) -> None:
    with pytest.raises(grpc.RpcError) as e:
        pod.create(_mount_cfg(pod, testenv.scratch_dir("np"), cri.PROPAGATION_BIDIRECTIONAL, "x"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _bad_stop_signal(cfg: cri.ContainerConfig) -> None:
    cfg.stop_signal = 999  # type: ignore[assignment]


def _mount_without_container_path(cfg: cri.ContainerConfig) -> None:
    cfg.mounts.add(host_path="/tmp", container_path="")


@pytest.mark.parametrize("spoil", [_bad_stop_signal, _mount_without_container_path])
def test_malformed_config_is_invalid_argument_at_create(pod: Pod, ctr: object, spoil: object) -> None:
    """Caller errors are INVALID_ARGUMENT from CreateContainer (not UNKNOWN there or at start), and
    nothing is made."""
    before = ctr("containers", "ls", "-q")  # type: ignore[operator]
    cfg = container_config(pod.image, name="bad", command=["sleep", "60"])
    spoil(cfg)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as e:
        pod.create(cfg)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert ctr("containers", "ls", "-q") == before  # type: ignore[operator]


def test_memory_and_cpu_limits(pod: Pod) -> None:
    cfg = container_config(pod.image, command=SLEEP)
    r = cfg.linux.resources
    r.memory_limit_in_bytes, r.cpu_quota, r.cpu_period, r.cpu_shares = 64 << 20, 50000, 100000, 256
    # what kubelet sends for every page size even when no hugepages are asked for (no hugetlb here)
    r.hugepage_limits.append(cri.HugepageLimit(page_size="2MB", limit=0))
    r.oom_score_adj = -998                                       # clamped: root here lacks CAP_SYS_RESOURCE
    cid = pod.run(cfg)
    if os.path.exists("/sys/fs/cgroup/memory"):
        assert int(pod.sh(cid, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes")) == 64 << 20
        assert int(pod.sh(cid, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us")) == 50000
        assert int(pod.sh(cid, "cat /sys/fs/cgroup/cpu/cpu.shares")) == 256
    else:
        assert int(pod.sh(cid, "cat /sys/fs/cgroup/memory.max")) == 64 << 20
        assert pod.sh(cid, "cat /sys/fs/cgroup/cpu.max").split() == ["50000", "100000"]


def test_memory_hog_is_oomkilled(pod: Pod) -> None:
    cfg = container_config(pod.image, command=["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"])
    cfg.linux.resources.memory_limit_in_bytes = 32 << 20
    cfg.linux.resources.memory_swap_limit_in_bytes = 32 << 20
    cid = pod.run(cfg)
    st = pod.wait_exit(cid, timeout=30)
    assert (st.exit_code, st.reason) == (137, "OOMKilled")


def test_pid_namespace_modes(make_pod: object) -> None:
    pod = make_pod("pidns")  # type: ignore[operator]
    own = pod.run(container_config(pod.image, name="own", command=SLEEP))
    assert pod.sh(own, "ps -o pid,args").count("sleep 1000") == 1 and "pause" not in pod.sh(own, "ps -o args")
    target_cfg = container_config(pod.image, name="target", command=["sh", "-c", "sleep 999"])
    target_cfg.linux.security_context.namespace_options.pid = cri.TARGET
    target_cfg.linux.security_context.namespace_options.target_id = own
    target = pod.run(target_cfg)
    procs = pod.sh(target, "ps -o args")
    assert "sleep 1000" in procs and "sleep 999" in procs       # sees the target container's processes
    host_cfg = container_config(pod.image, name="host", command=SLEEP)
    host_cfg.linux.security_context.namespace_options.pid = cri.NODE
    host = pod.run(host_cfg)
    assert int(pod.sh(host, "ls -d /proc/[0-9]* | wc -l")) > 20  # the host's processes


# What kubelet sends for procMount Default (its defaults; criproxy masks exactly what it is sent).
KUBELET_MASKED = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                  "/sys/devices/virtual/powercap"]
KUBELET_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def test_masked_and_readonly_paths(pod: Pod) -> None:
    cfg = container_config(pod.image, name="d", command=SLEEP)
    cfg.linux.security_context.masked_paths.extend(KUBELET_MASKED)
    cfg.linux.security_context.readonly_paths.extend(KUBELET_READONLY)
    default = pod.run(cfg)
    assert pod.sh(default, "wc -c < /proc/timer_list").strip() == "0"     # masked by /dev/null
    assert pod.exec(default, "sh", "-c", "echo 1 > /proc/sys/kernel/domainname").exit_code != 0
    cfg = container_config(pod.image, name="o", command=SLEEP)
    cfg.linux.security_context.masked_paths.append("/etc/hostname")
    cfg.linux.security_context.readonly_paths.append("/tmp")
    other = pod.run(cfg)
    assert pod.sh(other, "wc -c < /etc/hostname").strip() == "0"
    assert pod.exec(other, "touch", "/tmp/x").exit_code != 0


def test_seccomp_localhost_profile(pod: Pod, testenv: Environment) -> None:
    profile = testenv.scratch_dir("seccomp") / "no-mkdir.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], '
                       '"action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}')
    cfg = container_config(pod.image, command=SLEEP)
    cfg.linux.security_context.seccomp.profile_type = cri.SecurityProfile.Localhost
    cfg.linux.security_context.seccomp.localhost_ref = str(profile)
    cid = pod.run(cfg)
    resp = pod.exec(cid, "mkdir", "/tmp/d")
    assert resp.exit_code != 0 and b"Operation not permitted" in resp.stderr
    bad = container_config(pod.image, name="bad", command=SLEEP)
    bad.linux.security_context.seccomp.profile_type = cri.SecurityProfile.Localhost
    bad.linux.security_context.seccomp.localhost_ref = str(profile.with_name("missing.json"))
    with pytest.raises(grpc.RpcError) as e:
        pod.create(bad)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_tty_container_logs_stdout_only(pod: Pod) -> None:
    cid = pod.run(container_config(pod.image, command=["sh", "-c", "echo out; echo err >&2; tty"], tty=True))
    pod.wait_exit(cid)
    recs = wait_for(lambda: len(r := read_log(pod.log())) >= 3 and r, what="tty output")
    assert {s for s, _t, _x in recs} == {"stdout"}
    assert [x for _s, _t, x in recs][:2] == ["out", "err"] and recs[2][2].startswith("/dev/pts/")


def test_pod_sysctls_reach_containers(make_pod: object) -> None:
    pod = make_pod("sysctl", linux=cri.LinuxPodSandboxConfig(  # type: ignore[operator]
        sysctls={"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "80"}))
    cid = pod.run(container_config(pod.image, command=SLEEP))
    assert pod.sh(cid, "cat /proc/sys/kernel/shm_rmid_forced").strip() == "1"
    assert pod.sh(cid, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").strip() == "80"


def _cgroups_of(pid: int) -> dict[str, str]:
    """Hierarchy (controllers, or "" for v2) → cgroup path, from the host's /proc/<pid>/cgroup."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {parts[1]: parts[2] for parts in (line.split(":", 2) for line in lines)}


def test_pause_and_container_share_the_pod_cgroup(make_pod: object) -> None:
    """A kubelet-style cgroupfs parent (<top>/<qos>/pod<uid>): the pause process and the workload's
    sit in <parent>/<their ID> in the same hierarchies, i.e. side by side in the pod's cgroup."""
    import json
    import uuid

    top = f"/criproxy-test-{uuid.uuid4().hex[:8]}"
    parent = f"{top}/burstable/pod{uuid.uuid4()}"
    pod = make_pod("cgshare", linux=cri.LinuxPodSandboxConfig(cgroup_parent=parent))  # type: ignore[operator]
    try:
        cid = pod.run(container_config(pod.image, command=SLEEP))
        sandbox = pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id, verbose=True))
        pause = _cgroups_of(int(json.loads(sandbox.info["info"])["pid"]))
        status = pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True))
        work = _cgroups_of(int(json.loads(status.info["info"])["pid"]))
        placed = {h for h, p in pause.items() if p == f"{parent}/{pod.id}"}
        assert placed, f"pause is in no {parent}/<sandbox id> cgroup: {pause}"
        assert placed == {h for h, p in work.items() if p == f"{parent}/{cid}"}, (pause, work)
    finally:
        pod.cleanup()
        for h in Path("/sys/fs/cgroup").iterdir():   # the kubelet's cgroups; here the test made them
            for d in (parent, f"{top}/burstable", top):
                with contextlib.suppress(OSError):
                    (h / d.lstrip("/")).rmdir()


@pytest.mark.skipif(not Path("/run/systemd/system").is_dir(),
                    reason="systemd is not PID 1 here: runc's systemd cgroup driver cannot run")
def test_systemd_driver_pause_and_container_share_the_pod_slice(criproxy_factory: object, busybox: str,
                                                                testenv: Environment) -> None:
    """With the systemd driver and a kubelet-style slice parent, both processes run in scopes
    ``cri-containerd-<id>.scope`` inside the pod's slice, and RuntimeConfig says SYSTEMD."""
    import json
    import uuid

    from tests.integration.containers.conftest import pod_config

    proc = criproxy_factory(extra_args=["--cgroup-driver", "systemd"])  # type: ignore[operator]
    uid = str(uuid.uuid4())
    parent = f"/criproxytest.slice/criproxytest-pod{uid.replace('-', '_')}.slice"
    with proc.client() as client:
        resp = client.runtime.RuntimeConfig(cri.RuntimeConfigRequest())
        assert resp.linux.cgroup_driver == cri.SYSTEMD
        cfg = pod_config(testenv.scratch_dir("logs"), "sdshare", linux=cri.LinuxPodSandboxConfig(cgroup_parent=parent))
        pod = Pod(client, cfg, busybox)
        try:
            cid = pod.run(container_config(busybox, command=SLEEP))
            sandbox = pod.rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod.id, verbose=True))
            pause = _cgroups_of(int(json.loads(sandbox.info["info"])["pid"]))
            status = pod.rt.ContainerStatus(cri.ContainerStatusRequest(container_id=cid, verbose=True))
            work = _cgroups_of(int(json.loads(status.info["info"])["pid"]))
            placed = {h for h, p in pause.items() if p == f"{parent}/cri-containerd-{pod.id}.scope"}
            assert placed, f"pause is in no {parent}/cri-containerd-<sandbox id>.scope: {pause}"
            assert placed == {h for h, p in work.items() if p == f"{parent}/cri-containerd-{cid}.scope"}, work
        finally:
            pod.cleanup()


def test_cgroup_under_pod_parent_and_removed(make_pod: object) -> None:
    import uuid

    parent = f"/criproxy-test/pod{uuid.uuid4().hex[:12]}"
    pod = make_pod("cg", linux=cri.LinuxPodSandboxConfig(cgroup_parent=parent))  # type: ignore[operator]
    cid = pod.run(container_config(pod.image, command=SLEEP))
    dirs = [p for p in Path("/sys/fs/cgroup").glob(f"*{parent}/{cid}") if p.is_dir()]
    assert dirs, f"no cgroup {parent}/{cid}"
    pod.rt.RemoveContainer(cri.RemoveContainerRequest(container_id=cid))
    assert not [p for p in dirs if p.exists()]
