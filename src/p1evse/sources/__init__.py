"""What every source delivers to (`Intake`) and is (`Source`). The sources themselves
are one module each; `p1evse.sources.build` maps `source.type` to them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.model import PhaseKind, Reading, Rejection, Side
    from p1evse.mqtt import MqttPort, PayloadHandler


class Intake(Protocol):
    """Where a source delivers, on the event loop: values in watts, or the reason a
    payload was refused."""

    def half(self, side: Side, watts: float) -> None:
        """One half of a telegram (split topics); the pipeline pairs them."""
        ...

    def reading(self, reading: Reading) -> None:
        """A whole reading, `at` the loop time it arrived."""
        ...

    def phase(self, kind: PhaseKind, index: int, value: float) -> None:
        """One per-phase value (L1-L3 as index 0-2) of a source that sends them apart
        from the totals (split topics)."""
        ...

    def reject(self, reason: Rejection, detail: str, side: Side | None = None) -> None:
        """A payload refused; `side`: the half it was (split topics), whose zero partner
        then goes with it."""
        ...


class Source(Protocol):
    async def run(self, intake: Intake) -> None: ...

    def counts(self) -> list[Count]:
        """What it counts of its own, for /metrics (what it delivers, the pipeline
        counts)."""
        ...


class TopicSource(Source, Protocol):
    """A source whose messages come over MQTT: its handlers by topic, which `run`
    subscribes, or which a fleet routes to its sites."""

    def handlers(self, intake: Intake) -> dict[str, PayloadHandler]: ...


async def listen(broker: MqttPort, handlers: dict[str, PayloadHandler]) -> None:
    """Subscribe each topic's handler, live messages only (a reading must be news);
    the broker delivers, there is nothing else to do."""
    for topic, handler in handlers.items():
        broker.subscribe(topic, handler, retained=False)
    await asyncio.Event().wait()
