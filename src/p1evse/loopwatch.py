"""How late the event loop runs what is due: everything the service does runs on one
loop, so anything that holds it (a burst of messages, a large answer to the page, a
garbage-collector pass, thousands of timers due together) delays every reading behind
it. A timer every 50 ms measures the delay; /metrics shows it as a histogram and as the
longest of the last minute.

A loop more than `HELD_AFTER_S` late was held: the process was stopped (SIGSTOP, a
suspended VM or container) or the machine did not run it (swapping). Nothing could
arrive in that time, so the stale guard does not count it as the meter's silence
(`held`): on resume the readings that waited in the socket are read, not a pause sent
ahead of them."""

from __future__ import annotations

import asyncio
import bisect

PERIOD_S = 0.05
# upper bounds of the histogram's buckets, s; the last bucket is everything above
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WINDOW_S = 60.0
# far beyond what the service's own work holds the loop for (a full collection at ten
# thousand sites: ~0.1 s)
HELD_AFTER_S = 1.0


class LoopWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.counts = [0] * (len(BUCKETS_S) + 1)  # per bucket, not cumulative
        self.total_s = 0.0
        self._window_start = loop.time()
        self._longest = 0.0  # in the current window
        self._longest_before = 0.0  # in the window before it
        self.held_s = 0.0  # in all, s
        # the watch's next timer, while it runs: None, and nothing is taken as held
        self._due: float | None = None
        self._held_until = 0.0  # what `held` counted ends here

    async def run(self) -> None:
        loop = self._loop
        try:
            while True:
                self._due = due = loop.time() + PERIOD_S
                await asyncio.sleep(PERIOD_S)
                now = loop.time()
                self.held(now)
                self.note(now - due, now)
        finally:
            self._due = None

    def held(self, now: float) -> float:
        """How long the loop was held, s in all, up to `now` (the loop's time): the
        watch's timer overdue by more than `HELD_AFTER_S` says the loop ran nothing
        since it was due. Asked by whatever runs first on resume (a reading that waited,
        a timer), so that it knows before it acts."""
        due = self._due
        if due is not None:
            overdue = now - max(due, self._held_until)
            if overdue > HELD_AFTER_S:
                self.held_s += overdue
                self._held_until = now
        return self.held_s

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
