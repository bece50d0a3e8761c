"""The loop watch: each delay in its bucket, the longest of the last minute or two."""

from __future__ import annotations

import asyncio

from p1evse.loopwatch import BUCKETS_S, WINDOW_S, LoopWatch


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
