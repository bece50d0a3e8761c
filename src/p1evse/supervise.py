"""Keeping the service's tasks alive: a task that fails is logged once per cause,
restarted with capped backoff, and reported as a problem until it has run again for a
while, so that /healthz says what is wrong instead of the process ending or going
quietly deaf. A task that returns has finished its work (the broker connection after
`close()`) and is not restarted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from p1evse.backoff import Backoff
from p1evse.counts import Count
from p1evse.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# A restarted task counts as healthy again once it has run this long without failing.
HEALTHY_AFTER_S = 30.0
# The same failure of the same task is logged (with its traceback) once in this period.
FAILURE_LOG_PERIOD_S = 3600.0

Problem = Callable[[str, str | None], None]
"""Told (task name, what is wrong) when a task fails, and (task name, None) once it has
recovered."""


class Supervisor:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_problem: Problem | None = None,
        healthy_after_s: float = HEALTHY_AFTER_S,
    ) -> None:
        self._loop = loop
        self._on_problem = on_problem
        self._healthy_after_s = healthy_after_s
        self._log = RateLimiter(FAILURE_LOG_PERIOD_S, loop.time)
        self._failing: dict[str, str] = {}  # task name -> what is wrong
        self.restarts: dict[str, int] = {}

    async def keep(self, name: str, task: Callable[[], Awaitable[None]]) -> None:
        """Run `task()` until it returns, restarting it whenever it fails."""
        backoff = Backoff(initial=1.0, cap=60.0)
        self.restarts.setdefault(name, 0)  # counted from zero, for /metrics
        while True:
            recovered = self._loop.call_later(self._healthy_after_s, self._recovered, name)
            try:
                await task()
                return
            except Exception as exc:
                self._failed(name, exc)
            finally:
                recovered.cancel()
            await asyncio.sleep(backoff.next_delay())
            self.restarts[name] += 1

    def problems(self) -> list[str]:
        """What is wrong with the tasks that failed and have not run long since."""
        return list(self._failing.values())

    def counts(self) -> list[Count]:
        return [
            Count("task_restarts", "Failed tasks restarted, by task", count, {"task": name})
            for name, count in self.restarts.items()
        ]

    def _failed(self, name: str, error: Exception) -> None:
        cause = f"{type(error).__name__}: {error}"[:200]
        more = self._log.note((name, type(error).__name__))
        if more is not None:
            log.error("task %s failed: %s; restarting it%s", name, cause, more, exc_info=error)
        problem = self._failing[name] = f"task {name} failed ({cause}); restarting it"
        if self._on_problem is not None:
            self._on_problem(name, problem)

    def _recovered(self, name: str) -> None:
        if name not in self._failing:
            return
        del self._failing[name]
        log.info("task %s has run for %.0f s since its restart", name, self._healthy_after_s)
        if self._on_problem is not None:
            self._on_problem(name, None)
