"""What the status page, /api/state, /metrics and /healthz are made of: a site's state,
fed by the bridge's events on an injected clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
    wall_offset: float = WALL_OFFSET  # set the wall clock by changing it

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset


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


def test_health_needs_requests_to_the_charger_to_succeed() -> None:
    settings = Settings(
        publish={"stale_after": 10}, openevse={"transport": "http", "url": "http://evse.lan"}
    )
    state, clock = make(settings)
    state.link_changed("broker", LinkState.CONNECTED)
    state.observe(Reading(100.0, 100.0, 0.0))
    state.charger_failing("POST /status: connection refused")
    clock.now = 109.0
    state.observe(Reading(109.0, 100.0, 0.0))
    assert state.unhealthy(clock.now) is None  # a failure shorter than stale_after
    clock.now = 110.0
    problem = state.unhealthy(clock.now)
    assert problem is not None
    assert problem.endswith(": failing for 10 s: POST /status: connection refused")
    state.charger_failing(None)
    assert state.unhealthy(clock.now) is None


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


def utc_day(epoch: float) -> float:
    return epoch - epoch % 86_400


def charging(amps: str = "10000", **fields: bytes) -> tuple[SiteState, Clock, ChargerState]:
    charger = ChargerState()
    clock = Clock()
    state = new_state(
        Settings(), Counters(), clock, wall=clock.wall, charger=charger, day_start=utc_day
    )
    charger.update("amp", amps.encode(), clock.now)
    for field, payload in fields.items():
        charger.update(field, payload, clock.now)
    return state, clock, charger


def feed(state: SiteState, clock: Clock, seconds: int, net_w: float, **extra: Any) -> None:
    """A reading a second, the charger reporting along."""
    assert state.charger is not None
    for _ in range(seconds):
        state.charger.updated_at = clock.now
        state.observe(Reading(clock.now, max(net_w, 0.0), max(-net_w, 0.0), **extra))
        clock.now += 1.0


def test_the_car_s_energy_is_split_into_solar_and_grid() -> None:
    state, clock, _ = charging()  # 10 A at the nominal 230 V: 2.3 kW
    assert state.snapshot()["car"] == {
        "power_w": 2300,
        "voltage_v": 230.0,
        "voltage_from": "nominal",
    }
    feed(state, clock, 3601, 1000.0)  # an hour importing 1 kW: 1 kW of it from the grid
    energy = state.snapshot()["energy"]
    assert energy["grid_kwh"] == 1.0
    assert energy["solar_kwh"] == 1.3
    assert energy["since_start_up"] is True
    assert energy["since"] == 100.0 + WALL_OFFSET
    feed(state, clock, 3600, -500.0)  # an hour exporting: all of it solar
    feed(state, clock, 3600, 5000.0)  # an hour importing more than the car draws: all grid
    energy = state.snapshot()["energy"]
    assert (energy["solar_kwh"], energy["grid_kwh"]) == (3.6, 3.3)


def test_a_gap_in_the_readings_is_not_counted_and_midnight_starts_anew() -> None:
    state, clock, _ = charging()
    feed(state, clock, 1, 0.0)
    clock.now += 600  # ten minutes without a reading (stale_after is 30 s)
    feed(state, clock, 1801, 0.0)  # half an hour
    assert state.snapshot()["energy"]["solar_kwh"] == 1.15
    midnight = utc_day(clock.wall()) + 86_400
    clock.now = midnight - WALL_OFFSET - 900  # a quarter to midnight
    feed(state, clock, 1801, 0.0)  # until a quarter past: only the quarter after counts
    energy = state.snapshot()["energy"]
    assert energy["solar_kwh"] == 0.575
    assert energy["since"] == midnight
    assert energy["since_start_up"] is False
    clock.now += 86_400  # a day without readings: nothing today
    assert state.snapshot()["energy"]["solar_kwh"] == 0.0


def test_the_day_follows_the_wall_clock_when_it_is_set_after_start_up() -> None:
    """A board without a real-time clock starts with a wrong time until NTP sets it:
    today's energy counts by the wall clock as it is when the readings come."""
    state, clock, _ = charging()
    feed(state, clock, 1801, 0.0)  # half an hour at 2.3 kW, all solar
    assert state.snapshot()["energy"]["solar_kwh"] == 1.15
    clock.wall_offset += 86_400  # the wall clock is set a day on
    feed(state, clock, 1800, 0.0)  # (the first second taken as the new day's)
    energy = state.snapshot()["energy"]
    assert energy["solar_kwh"] == 1.15  # the new day's half hour only
    assert energy["since"] == utc_day(clock.wall())


def test_the_car_s_power_takes_the_charger_s_voltage_else_the_meter_s() -> None:
    state, clock, charger = charging("16000")
    state.observe(Reading(clock.now, 0.0, 100.0, phase_voltage_v=(232.0, 234.0, None)))
    assert state.snapshot()["car"] == {"power_w": 3728, "voltage_v": 233.0, "voltage_from": "meter"}
    charger.update("voltage", b"240", clock.now)
    assert state.snapshot()["car"] == {
        "power_w": 3840,
        "voltage_v": 240.0,
        "voltage_from": "charger",
    }
    clock.now += CHARGER_FRESH_S  # the charger went silent: its current is not known
    assert state.snapshot()["car"] is None


def test_pause_claims_and_stale_periods_are_kept_for_the_chart() -> None:
    state, clock = make()
    assert state.snapshot()["pause"] == {"claimed": False, "since": None}
    state.observe(StaleEntered(130.0, None, StaleAction.PAUSE))
    clock.now = 130.0
    state.claim_changed(True)  # the sink sent its claim
    snapshot = state.snapshot()
    assert snapshot["pause"] == {"claimed": True, "since": 130.0 + WALL_OFFSET}
    assert snapshot["periods"] == {
        "stale": [[130.0 + WALL_OFFSET, None]],
        "paused": [[130.0 + WALL_OFFSET, None]],
    }
    state.observe(StaleLeft(150.0, 20.0))
    clock.now = 150.5
    state.claim_changed(False)
    snapshot = state.snapshot()
    assert snapshot["pause"]["claimed"] is False
    assert snapshot["periods"]["stale"] == [[130.0 + WALL_OFFSET, 150.0 + WALL_OFFSET]]
    assert snapshot["periods"]["paused"] == [[130.0 + WALL_OFFSET, 150.5 + WALL_OFFSET]]


def test_the_value_sent_says_what_it_is_the_mean_of() -> None:
    state, _ = make()
    state.observe(GridPower(100.0, 10, 1))
    assert state.snapshot()["published"]["over_s"] is None
    state.observe(GridPower(105.0, 20, 5))
    assert state.snapshot()["published"]["over_s"] == 5.0
    assert state.snapshot()["published"]["held"] is False
    state.observe(GridPower(110.0, 20, 5, held=True))
    assert state.snapshot()["published"]["held"] is True


def test_today_s_rows_are_a_minute_each_since_midnight() -> None:
    state, clock, _ = charging()
    midnight = utc_day(clock.wall()) + 86_400
    clock.now = midnight - WALL_OFFSET - 120  # two minutes before midnight
    feed(state, clock, 240, 600.0)  # until two minutes after
    today = state.history_json(range_="today")
    assert today["step_s"] == 60.0
    assert today["t0"] == midnight
    assert [row[:2] for row in today["rows"]] == [[0, 600], [1, 600]]
    assert len(state.history_json()["rows"]) == 240  # the hour: every second


def test_a_simulated_clock_is_shown_only_where_there_is_one() -> None:
    state, _ = make()
    assert state.snapshot()["sim_clock"] is None
    state.sim_clock = lambda: "10:42"
    assert state.snapshot()["sim_clock"] == "10:42"
