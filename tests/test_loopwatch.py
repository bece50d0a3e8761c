"""The loop watch: each delay in its bucket, the longest of the last minute or two, and
the time the loop was held."""

from __future__ import annotations

import asyncio
import contextlib
import time

from p1evse.loopwatch import BUCKETS_S, HELD_AFTER_S, WINDOW_S, LoopWatch
from tests.probe import EVENT_TIMEOUT_S


async def test_delays_are_bucketed_and_the_longest_is_kept_a_minute_or_two() -> None:
    watch = LoopWatch(asyncio.get_running_loop())
    start = asyncio.get_running_loop().time()
    for late in (0.0004, 0.003, 0.003, 0.2, 7.0):
        watch.note(late, start)
    assert watch.counts[0] == 1  # <= 1 ms
    assert watch.counts[BUCKETS_S.index(0.005)] == 2
    assert watch.counts[BUCKETS_S.index(0.25)] == 1
    assert watch.counts[-1] == 1  # above the last bound
    assert watch.longest() == 7.0
    watch.note(0.01, start + WINDOW_S)  # a new window: the one before still counts
    assert watch.longest() == 7.0
    watch.note(0.02, start + 2 * WINDOW_S)
    assert watch.longest() == 0.02
    assert round(watch.total_s, 4) == 7.2364


class NotingWatch(LoopWatch):
    """A watch that says when its own timer ran."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.noted = asyncio.Event()

    def note(self, late_s: float, now: float) -> None:
        super().note(late_s, now)
        self.noted.set()


def hold_the_loop(seconds: float) -> None:
    """Nothing on the loop runs meanwhile, as when the process is stopped."""
    time.sleep(seconds)


async def test_a_loop_held_over_a_second_is_counted_once_by_whatever_runs_first() -> None:
    loop = asyncio.get_running_loop()
    watch = NotingWatch(loop)
    assert watch.held(loop.time() + 100) == 0.0  # not running: nothing is taken as held
    began = loop.time()
    running = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0)  # its first timer is set
        hold_the_loop(HELD_AFTER_S + 0.5)
        held = watch.held(loop.time())  # the first thing to run on resume asks
        assert HELD_AFTER_S < held <= loop.time() - began
        assert watch.held(loop.time()) == held
        watch.noted.clear()
        await asyncio.wait_for(watch.noted.wait(), EVENT_TIMEOUT_S)
        assert watch.counts[-1] == 1  # the watch's own late timer: not counted again
        assert watch.held_s == held
        hold_the_loop(HELD_AFTER_S / 3)  # a stall, not a hold
        assert watch.held(loop.time()) == held
    finally:
        running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert watch.held(loop.time() + 100) == held  # stopped: nothing more
