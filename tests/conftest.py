"""Shared fixtures: the real test environment (private containerd, registry, CNI) and the shim under test.

Fixtures (see tests/harness/env.py for every attribute):
- ``testenv`` (session): ``Environment``: images built, registry up, private containerd up, slot held.
- ``criproxy_proc`` (session): the running ``CriproxyProcess`` (``.stop() .kill() .start() .restart()``).
- ``criproxy`` (function): the same process, restarted first if an earlier test left it stopped.
- ``cri`` (function): ``CriClient`` on criproxy's socket: ``.runtime``, ``.image``, ``.pb``.
- ``builtin_cri`` (function): ``CriClient`` on containerd's own built-in CRI (comparison baseline).
- ``ctr`` (function): ``ctr(*args, namespace="criproxy")`` -> stdout, against the private containerd.
- ``criproxy_factory`` (function): ``criproxy_factory(extra_args=[...])`` -> a fresh extra instance,
  stopped at the end of the test.

Integration tests (everything under tests/integration, or marked ``integration``) need root: selecting
any of them as another user stops the run with one line saying so (a run that skipped them all would
look green). Any failure to bring the environment up is an error.

Under ``CI=true`` a skipped test fails unless ``tests/allowed_skips.toml`` lists it with its reason.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import itertools
import os
import signal
import time
import tomllib
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.harness import CriproxyFactory
from tests.harness.client import CriClient
from tests.harness.criproxy import CGROUP_DRIVER, CriproxyProcess
from tests.harness.env import Environment

TESTS_DIR = Path(__file__).resolve().parent
_ENV: list[Environment] = []  # for the terminal summary and failure reports
_TEST_START = pytest.StashKey[float]()


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    """CI's timeout sends SIGTERM: turn it into KeyboardInterrupt so fixtures still tear down."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


ALLOWED_SKIPS_FILE = TESTS_DIR / "allowed_skips.toml"


def allowed_skips() -> list[tuple[str, str, list[str] | None]]:
    """(node id pattern, reason, containerd releases it is allowed on or None for all) of every skip
    CI accepts."""
    entries = tomllib.loads(ALLOWED_SKIPS_FILE.read_text()).get("skip", [])
    return [(str(e["test"]), str(e["reason"]), [str(r) for r in e["containerd"]] if "containerd" in e else None)
            for e in entries]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: only what will run counts
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (TESTS_DIR / "integration") in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
    needs_root = [item for item in items if item.get_closest_marker("integration")]
    if needs_root and os.geteuid() != 0:
        raise pytest.UsageError(
            f"{len(needs_root)} selected tests are integration tests and need root (real containerd, mounts, "
            "netns); run as root, or select only tests/unit")


def _unlisted_skip(nodeid: str) -> bool:
    if not in_ci():
        return False
    release = os.environ.get("CRIPROXY_TEST_CONTAINERD", "1.6")
    return not any(fnmatch.fnmatchcase(nodeid, pat) and (releases is None or release in releases)
                   for pat, _, releases in allowed_skips())


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A whole module skipped at collection is a skip too (``allow_module_level``)."""
    if report.skipped and _unlisted_skip(report.nodeid):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true without an entry in {ALLOWED_SKIPS_FILE.name}: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a failure with the environment up, attach the tails of the daemon logs to the report."""
    if call.when == "setup":
        item.stash[_TEST_START] = time.time()
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and _unlisted_skip(item.nodeid):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"skipped under CI=true ({reason}), and {ALLOWED_SKIPS_FILE.relative_to(TESTS_DIR.parent)} "
                        "does not list this test: make it run here, or list it there with the reason")
        return
    if not rep.failed or not _ENV or "testenv" not in getattr(item, "fixturenames", ()):
        return
    env = _ENV[0]
    since = item.stash.get(_TEST_START, 0.0) - 1
    for proc in env.criproxies:  # only instances that logged during this test
        if proc.log.exists() and proc.log.stat().st_mtime >= since:
            rep.sections.append((f"criproxy log tail ({proc.log})", proc.log_tail(60)))
    if env.containerd is not None:
        rep.sections.append((f"containerd log tail ({env.containerd.log})", env.containerd.daemon.log_tail(25)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _ENV:
        env = _ENV[0]
        up = getattr(env, "bring_up_seconds", float("nan"))
        terminalreporter.write_line(f"test env {env.name}: slot {env.slot.index if env.slot else '-'}, "
                                    f"up in {up:.1f}s; logs kept under .testenv/logs/")
        if env.containerd is not None:
            terminalreporter.write_line(f"containerd {env.containerd.version} ({env.containerd.binary}), "
                                        f"runc {env.runc_version}, cgroup driver {CGROUP_DRIVER}")
        for proc in env.criproxies:
            terminalreporter.write_line(f"  criproxy {proc.base.name}: last start took {proc.start_seconds:.1f}s")


@pytest.fixture(scope="session")
def testenv() -> Iterator[Environment]:
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (real containerd, mounts, netns)")
    env = Environment.create()
    _ENV.append(env)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture(scope="session")
def criproxy_proc(testenv: Environment) -> CriproxyProcess:
    return testenv.new_criproxy("cp")


@pytest.fixture
def criproxy(testenv: Environment, criproxy_proc: CriproxyProcess) -> CriproxyProcess:
    testenv.ensure_running()
    criproxy_proc.ensure_running()
    return criproxy_proc


@pytest.fixture
def cri(criproxy: CriproxyProcess) -> Iterator[CriClient]:
    with criproxy.client() as client:
        yield client


@pytest.fixture
def builtin_cri(testenv: Environment) -> Iterator[CriClient]:
    testenv.ensure_running()
    with testenv.builtin_cri() as client:
        yield client


@pytest.fixture
def ctr(testenv: Environment) -> Callable[..., str]:
    testenv.ensure_running()
    return testenv.ctr


@pytest.fixture(autouse=True)
def _event_loop_for_plain_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """A plain (non-async) test that makes grpc.aio objects needs a current event loop. Once any test
    has called ``asyncio.run`` (it leaves none set), such a test fails in a whole run and passes
    alone; give it a loop of its own, closed after it."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        yield
        return
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            yield
        finally:
            asyncio.set_event_loop(None)
            loop.close()
        return
    yield


_instance_ids = itertools.count()


@pytest.fixture
def criproxy_factory(testenv: Environment) -> Iterator[CriproxyFactory]:
    started: list[CriproxyProcess] = []

    def make(extra_args: Sequence[str] = (), namespace: str = "criproxy", start: bool = True) -> CriproxyProcess:
        proc = testenv.new_criproxy(f"cp{next(_instance_ids)}", extra_args, namespace, start)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
