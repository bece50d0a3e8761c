"""The retained state topic through a real broker: JSON without secrets, and never a
value that is not JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.payloads import JSON_SOURCE, JSON_TOPIC, STATE, TELEGRAM_JSON, ready
from tests.probe import Probe

PASSWORD = "st8-s3cret"


async def state_where(probe: Probe, check: Any) -> dict[str, Any]:
    """The next state message for which `check(state)` holds."""
    while True:
        state: dict[str, Any] = json.loads(await probe.next_payload(STATE))
        if check(state):
            return state


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_state_topic_is_retained_json_without_secrets(broker: BrokerProcess) -> None:
    settings = settings_for(
        broker,
        mqtt={"username": "evse", "password": PASSWORD},
        source=JSON_SOURCE,
        publish={"interval": 0},
    )
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(STATE)
        await ready(probe)
        probe.publish(JSON_TOPIC, TELEGRAM_JSON)
        state = await state_where(probe, lambda s: s["published"] is not None)
        raw = json.dumps(state)
    assert state["meter"]["net_w"] == -1200
    assert state["meter"]["phases"] == {
        "import_w": [300.0, None, None],
        "export_w": [None, 1500.0, None],
        "voltage_v": [229.0, 231.0, 233.0],
    }
    assert state["published"]["watts"] == -1200
    assert state["stale"] is None
    assert state["counters"]["readings"] == 1
    assert PASSWORD not in raw
    # retained: a newcomer gets the latest state at once
    async with Probe(broker.port) as newcomer:
        await newcomer.subscribe(STATE)
        message = await newcomer.next(STATE)
        assert message.retain


def strict_json(text: str) -> Any:
    """JSON as the standard has it: `Infinity` and `NaN` are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_implausible_phase_values_never_reach_the_states_json(broker: BrokerProcess) -> None:
    """1e308 kW is infinite watts and -230 V no voltage: refused like a bad total, and
    the state topic, /api/state and the page's stream stay JSON."""
    settings = settings_for(broker, source=JSON_SOURCE, publish={"interval": 0})
    broken = json.loads(TELEGRAM_JSON) | {
        "phase_currently_delivered_l1": "1e308",
        "phase_voltage_l2": "-230",
    }
    async with running(settings) as app, Probe(broker.port) as probe:
        await probe.subscribe(STATE)
        await ready(probe)
        probe.publish(JSON_TOPIC, json.dumps(broken))
        state = strict_json(await probe.next_payload(STATE))  # every message strict JSON
        while state["published"] is None:
            state = strict_json(await probe.next_payload(STATE))
        assert app.site.state is not None
        json.dumps(app.site.state.snapshot(), allow_nan=False)  # what /api/state and SSE send
    assert state["meter"]["phases"] == {
        "import_w": [None, None, None],
        "export_w": [None, 1500.0, None],
        "voltage_v": [229.0, None, 233.0],
    }
    assert state["published"]["watts"] == -1200  # the totals still count
    assert state["counters"]["rejected"] == {"non_finite": 1, "negative": 1}
