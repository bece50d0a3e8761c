"""How late the event loop runs what is due: everything the service does runs on one
loop, so anything that holds it (a burst of messages, a large answer to the page, a
garbage-collector pass, thousands of timers due together) delays every reading behind
it. A timer every 50 ms measures the delay; /metrics shows it as a histogram and as the
longest of the last minute."""

from __future__ import annotations

import asyncio
import bisect

PERIOD_S = 0.05
# upper bounds of the histogram's buckets, s; the last bucket is everything above
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WINDOW_S = 60.0


class LoopWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.counts = [0] * (len(BUCKETS_S) + 1)  # per bucket, not cumulative
        self.total_s = 0.0
        self._window_start = loop.time()
        self._longest = 0.0  # in the current window
        self._longest_before = 0.0  # in the window before it

    async def run(self) -> None:
        loop = self._loop
        while True:
            due = loop.time() + PERIOD_S
            await asyncio.sleep(PERIOD_S)
            self.note(loop.time() - due, loop.time())

    def note(self, late_s: float, now: float) -> None:
        late_s = max(0.0, late_s)
        self.counts[bisect.bisect_left(BUCKETS_S, late_s)] += 1
        self.total_s += late_s
        if now - self._window_start >= WINDOW_S:
            self._window_start = now
            self._longest_before, self._longest = self._longest, 0.0
        self._longest = max(self._longest, late_s)

    def longest(self) -> float:
        """The longest delay of the last one to two minutes, s."""
        return max(self._longest, self._longest_before)
