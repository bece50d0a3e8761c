"""The service's tasks kept alive: a failed task is restarted with backoff, counted,
reported as a problem until it has run for a while, and a finished one stays finished."""

from __future__ import annotations

import asyncio

from p1evse.supervise import Supervisor
from tests.probe import EVENT_TIMEOUT_S


async def test_a_failed_task_is_restarted_counted_and_reported_until_it_runs_again() -> None:
    problems: list[tuple[str, str | None]] = []
    read: list[list[str]] = []
    recovered = asyncio.Event()

    def on_problem(part: str, problem: str | None) -> None:
        problems.append((part, problem))
        read.append(supervisor.problems())  # what a fleet's /healthz reads then
        if problem is None:
            recovered.set()

    loop = asyncio.get_running_loop()
    supervisor = Supervisor(loop, on_problem, healthy_after_s=0.01)
    runs = 0
    stop = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("the charger said nonsense")
        await stop.wait()

    kept = asyncio.create_task(supervisor.keep("sink:flaky", flaky))
    await asyncio.wait_for(recovered.wait(), EVENT_TIMEOUT_S)
    assert supervisor.restarts == {"sink:flaky": 1}
    [(part, problem), cleared] = problems
    assert part == "sink:flaky"
    assert problem is not None
    assert "RuntimeError: the charger said nonsense" in problem
    assert cleared == ("sink:flaky", None)
    assert read == [[problem], []]
    assert [c.value for c in supervisor.counts()] == [1]
    stop.set()
    await asyncio.wait_for(kept, EVENT_TIMEOUT_S)
    assert runs == 2


async def test_a_task_that_returns_is_done_and_counted_from_zero() -> None:
    supervisor = Supervisor(asyncio.get_running_loop())
    done: list[str] = []

    async def finite() -> None:
        done.append("ran")

    await asyncio.wait_for(supervisor.keep("mqtt", finite), EVENT_TIMEOUT_S)
    assert done == ["ran"]
    assert supervisor.restarts == {"mqtt": 0}
