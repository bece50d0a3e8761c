"""The split-topic source's parsing, over arbitrary payloads, into a real pipeline."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.model import GridPower, Rejected, Rejection
from p1evse.sources.mqtt_split import MqttSplitSettings, MqttSplitSource
from tests.brokers import BrokerProcess
from tests.intakes import PipelineIntake
from tests.payloads import DELIVERED, ESPHOME, RETURNED, rejected, relayed


def source_into_pipeline(unit: str = "kW", **publish: Any) -> tuple[PipelineIntake, dict[str, Any]]:
    intake = PipelineIntake.relaying(**publish)
    source = MqttSplitSource(MqttSplitSettings(unit=unit), broker=None)  # type: ignore[arg-type]
    return intake, source.handlers(intake)


def test_kilowatts_become_watts_with_the_sign_of_their_topic() -> None:
    intake, handlers = source_into_pipeline()
    handlers[DELIVERED](b"1.234")
    handlers[RETURNED](b"0.250")
    values = [e.watts for e in intake.events if isinstance(e, GridPower)]
    assert values == [1234, -250]


def test_watts_unit() -> None:
    intake, handlers = source_into_pipeline(unit="W")
    handlers[RETURNED](b"734")
    assert [e.watts for e in intake.events if isinstance(e, GridPower)] == [-734]


def test_rejections_name_the_side() -> None:
    intake, handlers = source_into_pipeline()
    handlers[RETURNED](b"abc")
    [rejected] = [e for e in intake.events if isinstance(e, Rejected)]
    assert rejected.reason is Rejection.NOT_A_NUMBER
    assert rejected.detail == "export: 'abc'"


def test_a_half_that_is_no_number_takes_its_zero_partner_with_it() -> None:
    """The telegram had no good import: its zero export alone is not a 0 W reading."""
    intake, handlers = source_into_pipeline()
    handlers[RETURNED](b"2.000")
    for refused in (b"nan", b"abc"):  # the zero half after the refused one, then before
        handlers[DELIVERED](refused)
        handlers[RETURNED](b"0.000")
        intake.now += 2.0
        intake.events += intake.pipeline.tick(intake.now)
        handlers[RETURNED](b"0.000")
        handlers[DELIVERED](refused)
        intake.now += 2.0
        intake.events += intake.pipeline.tick(intake.now)
    assert [e.watts for e in intake.events if isinstance(e, GridPower)] == [-2000]


payloads = st.one_of(
    st.binary(max_size=80),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).encode()),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda d: str(d).encode()),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([DELIVERED, RETURNED]), payloads), max_size=40))
def test_arbitrary_payloads_never_crash_nor_publish_implausible_values(
    messages: list[tuple[str, bytes]],
) -> None:
    intake, handlers = source_into_pipeline(stale_after=3600)
    for topic, payload in messages:
        handlers[topic](payload)
    published = [e for e in intake.events if isinstance(e, GridPower)]
    for value in published:
        assert isinstance(value.watts, int)
        assert -50_000 <= value.watts <= 50_000
    counters = intake.pipeline.counters
    assert len(published) == counters.readings <= counters.halves
    assert all(math.isfinite(v.watts) for v in published)


# -- with phases (ESPHome's DSMR sensors) ------------------------------------------


def test_split_topics_with_phases_carry_them_on_the_reading() -> None:
    intake = PipelineIntake.relaying()
    source = MqttSplitSource(MqttSplitSettings(**ESPHOME), None)  # type: ignore[arg-type]
    handlers = source.handlers(intake)
    handlers["p1meter/sensor/power_delivered_l1/state"](b"0.800")
    handlers["p1meter/sensor/power_delivered_l3/state"](b"0.434")
    handlers["p1meter/sensor/voltage_l2/state"](b"229.5")
    handlers["p1meter/sensor/voltage_l2/state"](b"bad")
    handlers["p1meter/sensor/power_delivered/state"](b"1.234")
    assert intake.published == [1234]
    last = intake.pipeline.last_reading
    assert last is not None
    assert last.phase_import_w == (800, None, 434)
    assert last.phase_export_w is None
    assert last.phase_voltage_v == (None, 229.5, None)
    assert rejected(intake) == {Rejection.NOT_A_NUMBER: 1}


async def test_esphome_dsmr_sensors_through_a_broker(broker: BrokerProcess) -> None:
    messages = [
        ("p1meter/sensor/voltage_l1/state", b"230.1"),
        ("p1meter/sensor/power_returned/state", b"0.000"),
        ("p1meter/sensor/power_delivered/state", b"0.654"),
    ]
    await relayed(broker, {"type": "mqtt_split", **ESPHOME}, messages, ["654"])
