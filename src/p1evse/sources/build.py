"""Source registry: each `source.type` maps to a settings model and a source class.

Adding a source = one module + its settings model in the union + one registry line.
Every settings model has `subscriptions()` (its MQTT topics; none for p1 and
homewizard) and `describe()` (one line for logs and `p1evse check`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from p1evse.sources import Source
from p1evse.sources.homewizard import HomeWizardSettings, HomeWizardSource
from p1evse.sources.mqtt_json import MqttJsonSettings, MqttJsonSource
from p1evse.sources.mqtt_split import MqttSplitSettings, MqttSplitSource
from p1evse.sources.mqtt_telegram import MqttTelegramSettings, MqttTelegramSource
from p1evse.sources.mqtt_value import MqttValueSettings, MqttValueSource
from p1evse.sources.p1 import P1Settings, P1Source

if TYPE_CHECKING:
    from p1evse.mqtt import MqttPort

SourceSettings = Annotated[
    MqttSplitSettings
    | MqttValueSettings
    | MqttJsonSettings
    | MqttTelegramSettings
    | P1Settings
    | HomeWizardSettings,
    Field(discriminator="type"),
]


SourceFactory = Callable[[Any, "MqttPort"], Source]


# type -> (settings model, source class)
SOURCE_TYPES: dict[str, tuple[type[BaseModel], SourceFactory]] = {
    "mqtt_split": (MqttSplitSettings, MqttSplitSource),
    "mqtt_value": (MqttValueSettings, MqttValueSource),
    "mqtt_json": (MqttJsonSettings, MqttJsonSource),
    "mqtt_telegram": (MqttTelegramSettings, MqttTelegramSource),
    "p1": (P1Settings, P1Source),
    "homewizard": (HomeWizardSettings, HomeWizardSource),
}


def build_source(settings: SourceSettings, broker: MqttPort) -> Source:
    _, source_class = SOURCE_TYPES[settings.type]
    return source_class(settings, broker)
