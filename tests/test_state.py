"""What the status page, /api/state, /metrics and /healthz are made of: a site's state,
fed by the bridge's events on an injected clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from p1evse.config import Settings
from p1evse.model import (
    GridPower,
    Reading,
    Rejected,
    Rejection,
    StaleAction,
    StaleEntered,
    StaleLeft,
)
from p1evse.pipeline import Counters
from p1evse.sinks.charger import ChargerState
from p1evse.site import new_state
from p1evse.status.state import CHARGER_FRESH_S, LinkState, SiteState

WALL_OFFSET = 1_800_000_000.0  # Unix time = the clock + this


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + WALL_OFFSET


def make(
    settings: Settings | None = None, charger: ChargerState | None = None
) -> tuple[SiteState, Clock]:
    clock = Clock()
    state = new_state(settings or Settings(), Counters(), clock, wall=clock.wall, charger=charger)
    return state, clock


def test_readings_values_and_times() -> None:
    state, clock = make()
    state.observe(Reading(100.5, 0.0, 1234.4))
    state.observe(GridPower(100.5, -1200, 3))
    clock.now = 102.0
    snapshot = state.snapshot()
    assert snapshot["now"] == 102.0 + WALL_OFFSET
    assert snapshot["meter"] == {
        "at": 100.5 + WALL_OFFSET,
        "age_s": 1.5,
        "net_w": -1234,
        "import_w": 0,
        "export_w": 1234,
        "phases": None,  # this meter reported no phases
        "clock": None,  # nor its clock
    }
    assert snapshot["published"]["watts"] == -1200
    assert snapshot["published"]["readings"] == 3
    assert snapshot["published"]["to"] == "p1evse/grid_ie"
    assert snapshot["stale"] is None
    assert snapshot["links"]["source"]["state"] == "connected"
    assert snapshot["links"]["charger"]["state"] == "unknown"  # no charger read back
    assert snapshot["charger"] is None


def test_the_meters_clock_and_how_far_it_is_from_ours() -> None:
    state, clock = make()
    ours = datetime.fromtimestamp(clock.wall(), UTC)
    state.observe(Reading(100.0, 500.0, 0.0, meter_time=ours + timedelta(minutes=7)))
    assert state.snapshot()["meter"]["clock"] == {
        "time": (ours + timedelta(minutes=7)).isoformat(),
        "offset_s": 420.0,
    }


def test_stale_time_adds_up_over_gaps_and_counts_the_current_one() -> None:
    state, clock = make()
    state.observe(StaleEntered(130.0, None, StaleAction.PAUSE))
    state.observe(StaleLeft(140.0, 40.0))
    state.observe(Reading(140.0, 500.0, 0.0))
    state.observe(StaleEntered(170.0, 140.0, StaleAction.PAUSE))
    clock.now = 175.0
    assert state.stale_seconds(clock.now) == 15.0
    snapshot = state.snapshot()
    assert snapshot["stale"] == {
        "since": 170.0 + WALL_OFFSET,
        "for_s": 35.0,
        "action": "pause",
        "charger_spared": False,
    }
    assert snapshot["links"]["source"]["state"] == "disconnected"


def test_health_needs_the_broker_and_a_fresh_reading() -> None:
    state, clock = make(Settings(mqtt={"port": 1884}, publish={"stale_after": 10}))
    assert state.unhealthy(clock.now) == "MQTT 127.0.0.1:1884: connecting"
    state.link_changed("broker", LinkState.CONNECTED)
    clock.now = 103.0
    assert state.unhealthy(clock.now) == "no reading since start-up 3 s ago"
    state.observe(Reading(103.0, 100.0, 0.0))
    assert state.unhealthy(clock.now) is None
    clock.now = 113.0
    assert state.unhealthy(clock.now) == "no valid reading for 10 s (stale_after 10 s)"
    state.observe(Reading(113.0, 100.0, 0.0))
    state.link_changed("broker", LinkState.DISCONNECTED)
    assert state.unhealthy(clock.now) == "MQTT 127.0.0.1:1884: disconnected"


def test_listeners_hear_of_every_change() -> None:
    state, _ = make()
    heard: list[int] = []
    state.listeners.append(lambda: heard.append(1))
    state.observe(Rejected(100.0, Rejection.NOT_A_NUMBER, "'abc'"))
    state.link_changed("broker", LinkState.CONNECTED)
    assert len(heard) == 2
    assert state.snapshot()["last_rejection"]["reason"] == "not_a_number"


def test_no_secret_in_the_state() -> None:
    settings = Settings(
        mqtt={"username": "meter-login", "password": "mqtt-s3cret"},
        web={"token": "web-s3cret-0123456789"},
    )
    state, _ = make(settings)
    state.observe(Reading(100.0, 1.0, 0.0))
    text = json.dumps([state.snapshot(), state.history_json()])
    assert "s3cret" not in text
    assert "meter-login" not in text


def test_history_json_is_compact_and_in_unix_time() -> None:
    state, _ = make()
    state.observe(Reading(100.2, 0.0, 500.0))
    state.observe(GridPower(100.2, -500, 1))
    state.observe(Reading(102.7, 300.0, 0.0))
    history = state.history_json()
    assert history == {
        "t0": 100.0 + WALL_OFFSET,
        "step_s": 1.0,
        "rows": [[0, -500, -500], [2, 300]],  # trailing nulls left out
    }
    since = state.history_json(since=state.history.bucket(102.7))
    assert since["rows"] == [[0, 300]]
    assert since["t0"] == 102.0 + WALL_OFFSET


def test_the_charger_as_it_reports_back() -> None:
    charger = ChargerState()
    state, clock = make(charger=charger)
    assert state.snapshot()["links"]["charger"] == {
        "state": "connecting",
        "detail": "MQTT openevse/…: no report yet",
        "since": 100.0 + WALL_OFFSET,
    }
    for field, payload in (("amp", b"10500"), ("state", b"3"), ("divertmode", b"2")):
        charger.update(field, payload, clock.now)
    clock.now = 101.0
    state.observe(Reading(101.0, 2000.0, 0.0))
    snapshot = state.snapshot()
    assert snapshot["links"]["charger"]["state"] == "connected"
    assert snapshot["links"]["charger"]["detail"] == "MQTT openevse/… · eco · charging · 10.5 A"
    assert snapshot["charger"] == snapshot["charger"] | {
        "age_s": 1.0,
        "state": 3,
        "state_text": "charging",
        "mode": "eco",
        "current_a": 10.5,
    }
    assert state.history_json()["rows"] == [[0, 2000, None, 10.5]]
    # silent for too long: shown so, and no longer charted
    clock.now = 100.0 + CHARGER_FRESH_S
    state.observe(Reading(clock.now, 2000.0, 0.0))
    assert state.snapshot()["links"]["charger"]["state"] == "disconnected"
    assert state.history_json()["rows"][-1][1:] == [2000]


def test_a_charger_in_normal_mode_is_spared_by_the_stale_guard() -> None:
    charger = ChargerState()
    state, clock = make(charger=charger)
    state.observe(StaleEntered(130.0, None, StaleAction.PAUSE))
    assert state.snapshot()["stale"]["charger_spared"] is False  # mode unknown: paused
    charger.update("divertmode", b"1", clock.now)
    assert state.snapshot()["stale"]["charger_spared"] is True


def test_over_http_values_and_claims_go_to_the_charger_s_api() -> None:
    settings = Settings(openevse={"transport": "http", "url": "http://openevse.local"})
    state, _ = make(settings, ChargerState())
    config = state.snapshot()["config"]
    assert config["sent_to"] == "http://openevse.local/status"
    assert config["claim_to"].startswith("http://openevse.local/claims/")
    assert state.snapshot()["links"]["charger"]["detail"].startswith("HTTP http://openevse.local")


def test_the_charger_s_current_is_charted_when_it_changes_or_every_ten_seconds() -> None:
    charger = ChargerState()
    state, clock = make(charger=charger)
    charger.update("amp", b"6000", clock.now)
    for second in range(16):
        if second == 4:
            charger.update("amp", b"7000", clock.now)
        state.observe(Reading(clock.now, 100.0, 0.0))
        clock.now += 1.0
    charted = [(row[0], row[3]) for row in state.history_json()["rows"] if len(row) > 3]
    assert charted == [(0, 6.0), (4, 7.0), (14, 7.0)]  # at first, on the change, 10 s on


def test_the_meter_link_says_what_it_reads_for_every_kind_of_source() -> None:
    for source, detail in (
        ({}, "mqtt_split dsmr/reading/electricity_currently_delivered, "),
        ({"type": "p1", "url": "tcp://127.0.0.1:2000"}, "p1 tcp://127.0.0.1:2000 (DSMR 5)"),
        ({"type": "homewizard", "host": "127.0.0.1"}, "homewizard http://127.0.0.1"),
    ):
        state, _ = make(Settings(source=source))  # type: ignore[arg-type]
        assert state.snapshot()["links"]["source"]["detail"].startswith(detail)
