"""The split-topic source's parsing, over arbitrary payloads, into a real pipeline."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.model import GridPower, Rejected, Rejection
from p1evse.sources.mqtt_split import MqttSplitSettings, MqttSplitSource
from tests.intakes import PipelineIntake

DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"


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
