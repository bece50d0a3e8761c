"""Intakes for driving sources in tests: one into a real pipeline on a virtual clock,
one that records what arrives and lets a test wait for it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from p1evse.model import Event, GridPower, PhaseKind, Reading, Rejection, Side
from p1evse.pipeline import Pipeline, PublishSettings
from tests.probe import EVENT_TIMEOUT_S

TIMEOUT_S = EVENT_TIMEOUT_S


@dataclass
class PipelineIntake:
    """What the bridge does, on a virtual clock that advances 0.3 s per input."""

    pipeline: Pipeline
    now: float = 0.0
    events: list[Event] = field(default_factory=list)

    @classmethod
    def relaying(cls, **publish: Any) -> PipelineIntake:
        return cls(Pipeline(PublishSettings(interval=0, **publish), now=0.0))

    def clock(self) -> float:
        return self.now

    def half(self, side: Side, watts: float) -> None:
        self.now += 0.3
        self.events += self.pipeline.tick(self.now) + self.pipeline.half(side, watts, self.now)

    def reading(self, reading: Reading) -> None:
        self.now += 0.3
        self.events += self.pipeline.tick(self.now) + self.pipeline.reading(reading, self.now)

    def phase(self, kind: PhaseKind, index: int, value: float) -> None:
        self.events += self.pipeline.phase(kind, index, value, self.now)

    def reject(self, reason: Rejection, detail: str, side: Side | None = None) -> None:
        self.now += 0.3
        self.events += self.pipeline.reject(reason, detail, self.now, side)

    @property
    def published(self) -> list[int]:
        return [event.watts for event in self.events if isinstance(event, GridPower)]


class RecordingIntake:
    """Remembers readings and rejections; `next_reading()` / `rejected()` wait for them."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.rejections: list[tuple[Rejection, str]] = []
        self.phase_values: list[tuple[PhaseKind, int, float]] = []
        self._changed = asyncio.Event()
        self._read = 0

    def half(self, side: Side, watts: float) -> None:
        raise AssertionError(f"a whole-reading source delivered a half: {side} {watts}")

    def reading(self, reading: Reading) -> None:
        self.readings.append(reading)
        self._changed.set()

    def phase(self, kind: PhaseKind, index: int, value: float) -> None:
        self.phase_values.append((kind, index, value))

    def reject(self, reason: Rejection, detail: str, side: Side | None = None) -> None:
        self.rejections.append((reason, detail))
        self._changed.set()

    async def next_reading(self, timeout: float = TIMEOUT_S) -> Reading:
        """The first reading not yet returned by this method."""
        async with asyncio.timeout(timeout):
            while len(self.readings) <= self._read:
                self._changed.clear()
                await self._changed.wait()
        self._read += 1
        return self.readings[self._read - 1]

    async def rejected(self, reason: Rejection, count: int = 1, timeout: float = TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout):
            while self.count(reason) < count:
                self._changed.clear()
                await self._changed.wait()

    def count(self, reason: Rejection) -> int:
        return sum(1 for got, _ in self.rejections if got is reason)
