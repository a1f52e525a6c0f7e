"""Shared edge checks: what containerd, runc or a CNI plugin would refuse half way is refused first."""

from __future__ import annotations

import pytest

from criproxy import errors
from criproxy.cri.container_update import check_resources
from criproxy.protos import cri
from criproxy.translate import checks


def test_labels() -> None:
    checks.labels("x", {"a": "b", "k" * 2000: "v" * 2096})
    for bad in ({"": "v"}, {"k": "v" * 4096}, {"k": "é" * 2048}):
        with pytest.raises(errors.InvalidArgument):
            checks.labels("x", bad)


@pytest.mark.parametrize("value", ["a\x00b", "a\nb", "\r", "a;b", "k=v", "x" * 254])
def test_plain_refuses(value: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        checks.plain("pod name", value, checks.NAME_MAX, ";=")


def test_plain_secret_is_not_echoed() -> None:
    with pytest.raises(errors.InvalidArgument) as e:
        checks.plain("auth.password", "hunter2\r\nX-Injected: 1", 100, secret=True)
    assert "hunter2" not in str(e.value)
    checks.plain("pod name", "web-0.ns_1", checks.NAME_MAX, ";=")


@pytest.mark.parametrize("fields", [
    {"cpu_period": -1}, {"cpu_shares": -5}, {"memory_limit_in_bytes": -2}, {"cpu_quota": -2},
    {"memory_swap_limit_in_bytes": -9}, {"cpuset_cpus": "0-3,x"}, {"cpuset_mems": "0\n"},
    {"hugepage_limits": [cri.HugepageLimit(page_size="2 MB", limit=1)]},
    {"unified": {"../../memory.max": "1"}}, {"unified": {"memory.max": "1\x00"}},
])
def test_resources_refused(fields: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidArgument):
        check_resources(cri.LinuxContainerResources(**fields), cgroup_v2=True)  # type: ignore[arg-type]


def test_resources_accepted_and_unified_needs_v2() -> None:
    ok = cri.LinuxContainerResources(cpu_period=100000, cpu_quota=-1, cpu_shares=2, memory_limit_in_bytes=1 << 30,
                                     cpuset_cpus="0-1,3", memory_swap_limit_in_bytes=-1,
                                     hugepage_limits=[cri.HugepageLimit(page_size="2MB", limit=0)],
                                     unified={"memory.high": "max"})
    check_resources(ok, cgroup_v2=True)
    with pytest.raises(errors.InvalidArgument, match="cgroup v2"):
        check_resources(ok, cgroup_v2=False)
