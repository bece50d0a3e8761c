"""Source registry: each `source.type` maps to a settings model and a source class.

Adding a source = one module + its settings model in the union + one registry line.
Every settings model has `subscriptions()` (its MQTT topics; none for p1 and
homewizard) and `describe()` (one line for logs and `p1evse check`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import BaseModel, Field

from p1evse.sources.homewizard import HomeWizardSettings, HomeWizardSource
from p1evse.sources.mqtt_json import MqttJsonSettings, MqttJsonSource
from p1evse.sources.mqtt_split import MqttSplitSettings, MqttSplitSource
from p1evse.sources.mqtt_telegram import MqttTelegramSettings, MqttTelegramSource
from p1evse.sources.mqtt_value import MqttValueSettings, MqttValueSource
from p1evse.sources.p1 import P1Settings, P1Source

if TYPE_CHECKING:
    from p1evse.model import PhaseKind, Reading, Rejection, Side
    from p1evse.mqtt import Broker

SourceSettings = Annotated[
    MqttSplitSettings
    | MqttValueSettings
    | MqttJsonSettings
    | MqttTelegramSettings
    | P1Settings
    | HomeWizardSettings,
    Field(discriminator="type"),
]


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

    def reject(self, reason: Rejection, detail: str) -> None: ...


class Source(Protocol):
    async def run(self, intake: Intake) -> None: ...


SourceFactory = Callable[[Any, "Broker"], Source]


# type -> (settings model, source class)
SOURCE_TYPES: dict[str, tuple[type[BaseModel], SourceFactory]] = {
    "mqtt_split": (MqttSplitSettings, MqttSplitSource),
    "mqtt_value": (MqttValueSettings, MqttValueSource),
    "mqtt_json": (MqttJsonSettings, MqttJsonSource),
    "mqtt_telegram": (MqttTelegramSettings, MqttTelegramSource),
    "p1": (P1Settings, P1Source),
    "homewizard": (HomeWizardSettings, HomeWizardSource),
}


def build_source(settings: SourceSettings, broker: Broker) -> Source:
    _, source_class = SOURCE_TYPES[settings.type]
    return source_class(settings, broker)
