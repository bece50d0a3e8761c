"""kW read as W: 1.234 W passes every plausibility rule and reached the charger as 1 W
with nothing in the log; `run` now says so once, as `check` does."""

from __future__ import annotations

import logging

import pytest

from p1evse.sources.units import UNIT_SAMPLE
from tests.payloads import value_source

WARNING = "source.unit is W, but its first 10 values were all below 50, with fractions"


@pytest.mark.parametrize(
    ("payloads", "warned"),
    [
        (["1.234", "0.000", "1.2", "0.9"] * UNIT_SAMPLE, True),  # kW as DSMR-reader sends
        (["1234", "-560", "12.5"] * UNIT_SAMPLE, False),  # watts
        (["12", "0", "30"] * UNIT_SAMPLE, False),  # small, but whole: a quiet house in W
        (["1.234"] * (UNIT_SAMPLE - 1) + ["2500"], False),  # a large one ends the watch
    ],
)
def test_kilowatts_where_watts_are_configured_are_told_once(
    caplog: pytest.LogCaptureFixture, payloads: list[str], warned: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="p1evse.sources")
    _, handle = value_source(topic="power", unit="W")
    for payload in payloads:
        handle(payload.encode())
    found = [record for record in caplog.records if WARNING in record.getMessage()]
    assert len(found) == (1 if warned else 0)


def test_kilowatts_configured_as_kilowatts_are_not_watched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="p1evse.sources")
    intake, handle = value_source(topic="power", unit="kW")
    for _ in range(UNIT_SAMPLE * 2):
        handle(b"1.234")
    assert "source.unit" not in caplog.text
    assert intake.published[-1] == 1234


def test_the_split_topics_are_watched_too(caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_mqtt_split import DELIVERED, RETURNED, source_into_pipeline

    caplog.set_level(logging.WARNING, logger="p1evse.sources")
    _, handlers = source_into_pipeline(unit="W")
    for _ in range(UNIT_SAMPLE):
        handlers[DELIVERED](b"1.234")
        handlers[RETURNED](b"0.000")
    assert WARNING in caplog.text


def test_json_sources_are_watched_too(caplog: pytest.LogCaptureFixture) -> None:
    from tests.payloads import TASMOTA, json_source, tasmota_sml

    caplog.set_level(logging.WARNING, logger="p1evse.sources")
    _, handle = json_source(**TASMOTA, unit="W")
    for _ in range(UNIT_SAMPLE):
        handle(tasmota_sml(1.234, 0.0))
    assert WARNING in caplog.text
