"""Deadlines: which containerd calls get which, and the shared stop/remove attempt that a later
call replaces once it overran its deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from criproxy import errors
from criproxy.app import App
from criproxy.config import load
from criproxy.containerd import Containerd
from criproxy.podsandbox import attempt


def test_every_call_but_a_wait_has_a_deadline(tmp_path: Path) -> None:
    ctrd = Containerd(str(tmp_path / "none.sock"), "test", deadline=7.0)
    assert ctrd.deadline_for("Tasks", "Kill") == 7.0
    assert ctrd.deadline_for("Snapshots", "Prepare") == 7.0
    assert ctrd.deadline_for("Tasks", "Create") == 120.0          # slow: a shim starts, runc create
    assert ctrd.deadline_for("Diff", "Apply") == 1800.0
    assert ctrd.deadline_for("Tasks", "Wait") is None             # waiting is its job
    assert ctrd.deadline_for("Events", "Subscribe") is None
    generous = Containerd(str(tmp_path / "none.sock"), "test", deadline=500.0)
    assert generous.deadline_for("Tasks", "Create") == 500.0      # never below the configured default
    assert ctrd.tasks.Kill.deadline == 7.0 and ctrd.tasks.Wait.deadline is None


async def test_overrun_attempt_is_replaced_and_waiters_get_deadline_exceeded(tmp_path: Path) -> None:
    app = App(config=load(None, {"stop_timeout": 0.2}), ctrd=Containerd(str(tmp_path / "none.sock"), "test"))
    hang, runs = asyncio.Event(), []

    async def work() -> None:
        runs.append(1)
        if len(runs) == 1:
            await hang.wait()                  # the first attempt is stuck (a frozen shim)

    task, started = attempt.join_or_start(app, None, 0.0, work, "t")
    same, same_started = attempt.join_or_start(app, task, started, work, "t")
    assert same is task and same_started == started                 # joined while within its deadline
    with pytest.raises(errors.DeadlineExceeded):
        await attempt.wait(app, task, started, "stopping x")
    assert not task.done()                                           # the caller's deadline, not the work's
    fresh, fresh_started = attempt.join_or_start(app, task, started, work, "t")
    assert fresh is not task and fresh_started > started
    await attempt.wait(app, fresh, fresh_started, "stopping x")       # the fresh attempt succeeds
    await asyncio.sleep(0)
    assert task.cancelled() and len(runs) == 2
