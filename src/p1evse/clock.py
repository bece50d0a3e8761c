"""The clock port: what a site's timers need of time. The event loop is one
(`asyncio.AbstractEventLoop`); simulation has a virtual one (`p1evse.sim.virtual`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def when(self) -> float: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer: ...
