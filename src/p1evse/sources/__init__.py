"""Source registry: each `source.type` maps to a settings model and a source class.

Adding a source = one module + its settings model in the union + one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import BaseModel, Field

from p1evse.sources.mqtt_split import MqttSplitSettings, MqttSplitSource

if TYPE_CHECKING:
    from p1evse.model import Rejection, Side
    from p1evse.mqtt import Broker

SourceSettings = Annotated[MqttSplitSettings, Field(discriminator="type")]


class Intake(Protocol):
    """Where a source delivers: values in watts, or the reason a payload was refused."""

    def half(self, side: Side, watts: float) -> None: ...

    def reject(self, reason: Rejection, detail: str) -> None: ...


class Source(Protocol):
    async def run(self, intake: Intake) -> None: ...


SourceFactory = Callable[[Any, "Broker"], Source]


# type -> (settings model, source class)
SOURCE_TYPES: dict[str, tuple[type[BaseModel], SourceFactory]] = {
    "mqtt_split": (MqttSplitSettings, MqttSplitSource),
}


def build_source(settings: SourceSettings, broker: Broker) -> Source:
    _, source_class = SOURCE_TYPES[settings.type]
    return source_class(settings, broker)
