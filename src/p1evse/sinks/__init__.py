"""Sink registry: where grid power values and stale events go."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from p1evse.config import deadman_armed
from p1evse.sinks.charger import ChargerState
from p1evse.sinks.deadman import DeadmanSwitch
from p1evse.sinks.openevse_http import OpenEvseHttpSink
from p1evse.sinks.openevse_mqtt import OpenEvseMqttSink

if TYPE_CHECKING:
    from p1evse.config import Settings
    from p1evse.model import GridPower, Reading, StaleEntered, StaleLeft
    from p1evse.mqtt import Broker


class Sink(Protocol):
    """Methods are called on the event loop and must not block."""

    def grid_power(self, value: GridPower) -> None: ...

    def stale_entered(self, event: StaleEntered) -> None: ...

    def stale_left(self, event: StaleLeft) -> None: ...

    async def run(self) -> None:
        """The sink's own I/O, as a task for as long as the service runs."""

    async def close(self) -> None:
        """Undo what the sink holds (claims) before the process goes."""


def build_sinks(
    settings: Settings,
    broker: Broker,
    charger: ChargerState,
    clock: Callable[[], float],
    latest_reading: Callable[[], Reading | None],
    read_back_only: bool = False,
) -> list[Sink]:
    """The charger's sink (and over MQTT its dead-man's switch, unless only the charger's
    read-back is wanted, as by `check`); `latest_reading` gives the voltages when they
    are fed."""
    if settings.openevse.transport == "http":
        return [OpenEvseHttpSink(settings.openevse, charger, clock, latest_reading)]
    # the readings ride on the broker too: after a reconnect they need time to come back
    settle_s = settings.publish.stale_after if settings.source.subscriptions() else 0.0
    feed = OpenEvseMqttSink(settings.openevse, broker, charger, clock, latest_reading, settle_s)
    if read_back_only or not deadman_armed(settings):
        return [feed]
    return [feed, DeadmanSwitch(settings, broker, charger, feed)]
