"""AppArmor through CRI: Localhost profiles (loaded: applied and enforced; not loaded: refused at
create), RuntimeDefault and an unset profile (criproxy's default profile), privileged containers
(unconfined). The checks live in tests/harness/apparmor.py, shared with the VM lane, which runs them
in a Debian 12 guest with AppArmor enabled (scripts/vm/apparmor_check.py, docs/platforms.md). On a host
without AppArmor the same checks expect INVALID_ARGUMENT "AppArmor is not enabled" for every profile
asked for, so they run (and can fail) there too."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from criproxy.protos import cri
from tests.harness import apparmor as aa
from tests.integration.containers.conftest import Pod


@pytest.fixture(scope="module")
def test_profiles() -> Iterator[bool]:
    """The test profiles loaded where AppArmor is on; yields whether it is."""
    enabled = aa.host_enabled()
    if enabled:
        aa.load_test_profiles()
    yield enabled
    if enabled:
        aa.unload_test_profiles()


def _checks(pod: Pod, ctr: Callable[..., str], enabled: bool) -> aa.Checks:
    return aa.Checks(pod.client, pod.id, pod.cfg, pod.image, lambda: set(ctr("containers", "ls", "-q").split()),
                     enabled=enabled)


@pytest.fixture
def checks(pod: Pod, ctr: Callable[..., str], test_profiles: bool) -> aa.Checks:
    return _checks(pod, ctr, test_profiles)


def assert_all(rows: list[aa.Result]) -> None:
    assert rows
    failed = [f"{r.name}: {r.why}" for r in rows if not r.ok]
    assert not failed, "\n".join(failed)


def test_localhost_deny_write_profile(checks: aa.Checks) -> None:
    assert_all(checks.deny_write())


def test_localhost_permissive_profile_with_prefixed_ref(checks: aa.Checks) -> None:
    assert_all(checks.permissive())


def test_localhost_profile_not_loaded_is_refused(checks: aa.Checks) -> None:
    assert_all(checks.not_loaded())


def test_runtime_default_profile(checks: aa.Checks) -> None:
    assert_all(checks.runtime_default())


def test_unconfined_profile(checks: aa.Checks) -> None:
    assert_all(checks.unconfined())


def test_unset_profile(checks: aa.Checks) -> None:
    assert_all(checks.unset())


def test_privileged_container_runs_unconfined(make_pod: Callable[..., Pod], ctr: Callable[..., str],
                                              test_profiles: bool) -> None:
    pod = make_pod("privpod", linux=cri.LinuxPodSandboxConfig(
        security_context=cri.LinuxSandboxSecurityContext(privileged=True)))
    assert_all(_checks(pod, ctr, test_profiles).privileged())
