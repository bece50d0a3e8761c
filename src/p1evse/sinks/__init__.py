"""Destinations of the grid value: what every sink is (`Sink`). The sinks are one
module each; `p1evse.sinks.build` picks them from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.model import GridPower, StaleEntered, StaleLeft


class Sink(Protocol):
    """Methods are called on the event loop and must not block."""

    def grid_power(self, value: GridPower) -> None: ...

    def stale_entered(self, event: StaleEntered) -> None: ...

    def stale_left(self, event: StaleLeft) -> None: ...

    async def run(self) -> None:
        """The sink's own I/O, as a task for as long as the service runs."""

    async def close(self) -> None:
        """Undo what the sink holds (claims) before the process goes."""

    def counts(self) -> list[Count]:
        """What it counts, for /metrics."""
        ...
