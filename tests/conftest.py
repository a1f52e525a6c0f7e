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

Integration tests (everything under tests/integration, or marked ``integration``) are skipped only
when not root; any failure to bring the environment up is an error.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from tests.harness import CriproxyFactory
from tests.harness.client import CriClient
from tests.harness.criproxy import CriproxyProcess
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="integration tests need root (real containerd, mounts, netns)")
    for item in items:
        if (TESTS_DIR / "integration") in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") and os.geteuid() != 0:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a failure with the environment up, attach the tails of the daemon logs to the report."""
    if call.when == "setup":
        item.stash[_TEST_START] = time.time()
    outcome = yield
    rep = outcome.get_result()
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
        for proc in env.criproxies:
            terminalreporter.write_line(f"  criproxy {proc.base.name}: last start took {proc.start_seconds:.1f}s")


@pytest.fixture(scope="session")
def testenv() -> Iterator[Environment]:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root")
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
