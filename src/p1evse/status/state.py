"""What one site looks like right now, for the status page, /api/state, /metrics and
/healthz: fed by its Bridge's events and the links' connection changes.

One `SiteState` per Bridge (per meter): a later step runs thousands of sites in one
process, each with its own. `observe` runs in the publish path (the Bridge calls it right
after the sinks, before the MQTT client writes the value out), so it only records, in a
few µs; whoever wants to know about changes registers a cheap callback in `listeners`
and does its work later.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from p1evse import __version__
from p1evse.model import (
    Event,
    GridPower,
    Reading,
    Rejected,
    StaleAction,
    StaleEntered,
    StaleLeft,
)
from p1evse.sinks.charger import VOLTAGE_RANGE_V, describe_state
from p1evse.status.history import History, Intervals

if TYPE_CHECKING:
    from p1evse.counts import Count, Counted
    from p1evse.pipeline import Counters, PublishSettings
    from p1evse.sinks.charger import ChargerRoute, ChargerState

Clock = Callable[[], float]

# The charger reports on change and OpenEVSE considers a feed fresh for 120 s; a charger
# silent for longer is shown as such (and its current no longer charted).
CHARGER_FRESH_S = 120.0
CHARGER_CHART_PERIOD_S = 10.0  # shorter than any stale_after that breaks the chart's lines
DAY_STEP_S = 60.0  # the day's chart: one bucket a minute, the last 24 h
DAY_S = 86_400.0
PERIODS_KEPT = 48  # stale and paused periods the chart shades, each
NOMINAL_VOLTAGE_V = 230.0  # the car's power, when neither charger nor meter says

HistoryRange = Literal["hour", "today"]
HISTORY_RANGES: tuple[HistoryRange, ...] = ("hour", "today")


def local_midnight(epoch: float) -> float:
    """The start of the local day that Unix time `epoch` is in."""
    day = datetime.fromtimestamp(epoch).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class LinkState(enum.Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Link:
    """A connection the site depends on."""

    state: LinkState
    detail: str
    since: float | None = None


class SiteState:
    def __init__(
        self,
        publish: PublishSettings,
        route: ChargerRoute,
        counters: Counters,
        clock: Clock,
        *,
        source_detail: str,  # the topics, port or URL it reads
        broker_detail: str,  # MQTT host:port
        wall: Clock = time.time,
        name: str = "p1evse",
        charger: ChargerState | None = None,
        counted: Sequence[Counted] = (),  # the site's other parts: its source and sinks
        day_start: Callable[[float], float] = local_midnight,  # Unix time -> its day's start
    ) -> None:
        self.name = name
        self._publish = publish
        self._route = route
        self._source_detail = source_detail
        self.counters = counters
        self.charger = charger
        self._counted: list[Counted] = [
            counters,
            *([charger] if charger is not None else []),
            *counted,
        ]
        self._clock = clock
        self._wall = wall
        self.started = clock()
        self.history = History()
        self.day = History(DAY_S, DAY_STEP_S)
        self.stale_periods = Intervals(PERIODS_KEPT)
        self.pause_periods = Intervals(PERIODS_KEPT)  # while the charger had our claim
        self._day_start = day_start
        self.energy = CarEnergy(day_start, wall())
        # a label for the time of a simulated day (the demo's), shown on the page
        self.sim_clock: Callable[[], str] | None = None
        self.listeners: list[Callable[[], None]] = []  # told after every change
        self.meter: Reading | None = None
        # the meter's clock minus ours when its last reading came, if it says its time
        self.meter_clock_offset_s: float | None = None
        self.published: GridPower | None = None
        self.published_over_s: float | None = None  # since the value sent before it
        self.stale: StaleEntered | None = None
        self.last_rejection: Rejected | None = None
        # what keeps a part of the service from working, by part (a failed task, ...)
        self.problems: dict[str, str] = {}
        self._stale_closed_s = 0.0  # time spent stale in gaps that have ended
        self._charted_amps: float | None = None
        self._charted_at = 0.0
        self.links = {"broker": Link(LinkState.CONNECTING, broker_detail)}
        self._charger_failing: str | None = None  # what fails of the requests to it
        self._charger_failing_since = self.started

    # -- inputs ----------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """A Bridge observer: record the event (no I/O, no waiting)."""
        if isinstance(event, Reading):
            previous = self.meter
            if previous is not None and event.at - previous.at <= self._publish.stale_after:
                # the car's power and the meter's reading held until this one
                epoch = self._epoch_offset(self._clock())
                car_w = self.car_power()[0]
                self.energy.add(previous.net_w, car_w, previous.at + epoch, event.at + epoch)
            self.meter = event
            if event.meter_time is not None:
                self.meter_clock_offset_s = event.meter_time.timestamp() - self._wall()
            self.history.add_meter(event.at, event.net_w)
            self.day.add_meter(event.at, event.net_w)
            self._chart_charger(event.at)
        elif isinstance(event, GridPower):
            if not self._route.confirms_sent:
                self._record_sent(event)
        elif isinstance(event, StaleEntered):
            self.stale = event
            self.stale_periods.begin(event.at)
        elif isinstance(event, StaleLeft):
            if self.stale is not None:
                self._stale_closed_s += event.at - self.stale.at
            self.stale = None
            self.stale_periods.end(event.at)
        else:
            self.last_rejection = event
        self._changed()

    def _chart_charger(self, at: float) -> None:
        """The charger's current goes into the chart with the meter's readings, when it
        changed or every CHARGER_CHART_PERIOD_S (the chart holds it in between)."""
        charger = self.charger
        if (
            charger is None
            or charger.amps is None
            or charger.updated_at is None
            or at - charger.updated_at >= CHARGER_FRESH_S
        ):
            self._charted_amps = None
            return
        amps = charger.amps
        if amps != self._charted_amps or at - self._charted_at >= CHARGER_CHART_PERIOD_S:
            self.history.add_charger(at, amps)
            self.day.add_charger(at, amps)
            self._charted_amps, self._charted_at = amps, at

    def sent(self, value: GridPower) -> None:
        """The charger answered `value` (a route that `confirms_sent`)."""
        self._record_sent(value)
        self._changed()

    def _record_sent(self, value: GridPower) -> None:
        before = self.published
        self.published_over_s = None if before is None else value.at - before.at
        self.published = value
        self.history.add_published(value.at, value.watts)
        self.day.add_published(value.at, value.watts)

    def charger_failing(self, failure: str | None) -> None:
        """Requests to the charger fail, and why (None: they no longer do)."""
        if (failure is None) != (self._charger_failing is None):
            self._charger_failing_since = self._clock()
        self._charger_failing = failure
        self._changed()

    def claim_changed(self, held: bool) -> None:
        """A sink sent its pause claim to the charger (True) or released it (False)."""
        now = self._clock()
        if held:
            self.pause_periods.begin(now)
        else:
            self.pause_periods.end(now)
        self._changed()

    def link_changed(self, name: str, state: LinkState) -> None:
        link = self.links[name]
        link.state = state
        link.since = self._clock()
        self._changed()

    def problem(self, part: str, problem: str | None) -> None:
        """A part of the service has a problem (None: no longer)."""
        if problem is None:
            self.problems.pop(part, None)
        else:
            self.problems[part] = problem
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # -- derived -------------------------------------------------------------------

    def counts(self) -> list[Count]:
        """What the site's parts have counted: the pipeline, the charger's read-back,
        the source and the sinks."""
        return [count for part in self._counted for count in part.counts()]

    def reading_age(self, now: float) -> float | None:
        return None if self.meter is None else now - self.meter.at

    def quiet_for(self, now: float) -> float:
        """Seconds since the last valid reading, or since start-up if none came yet."""
        return now - (self.meter.at if self.meter is not None else self.started)

    def stale_seconds(self, now: float) -> float:
        """Time spent stale so far, the current gap included."""
        current = now - self.stale.at if self.stale is not None else 0.0
        return self._stale_closed_s + current

    def source_link(self) -> Link:
        """The source is as good as its data: fresh readings, none yet, or stale."""
        detail = self._source_detail
        if self.stale is not None:
            return Link(LinkState.DISCONNECTED, detail, self.stale.at)
        if self.meter is None:
            return Link(LinkState.CONNECTING, detail, self.started)
        return Link(LinkState.CONNECTED, detail)

    def charger_link(self, now: float) -> Link:
        """Whether the charger reports back: recently, not yet, or not any more."""
        charger = self.charger
        via = self._route.via
        if self._charger_failing is not None:
            failing = self._charger_failing
            return Link(LinkState.DISCONNECTED, f"{via}: {failing}", self._charger_failing_since)
        if charger is None:
            return Link(LinkState.UNKNOWN, f"{via}: not read back")
        if charger.updated_at is None:
            return Link(LinkState.CONNECTING, f"{via}: no report yet", self.started)
        age = now - charger.updated_at
        if age >= CHARGER_FRESH_S:
            return Link(LinkState.DISCONNECTED, f"{via}: no report for {age:.0f} s")
        parts = [via]
        if charger.divertmode is not None:
            parts.append(charger.divertmode.name.lower())  # eco / normal
        if charger.state is not None:
            parts.append(describe_state(charger.state))
        if charger.amps is not None:
            parts.append(f"{charger.amps:.1f} A")
        return Link(LinkState.CONNECTED, " · ".join(parts))

    def car_power(self) -> tuple[float, float | None, str]:
        """What the car draws now, in W (0 when the charger does not say), the voltage
        that takes and where that voltage is from: the charger's own, the meter's mean,
        or the nominal 230 V."""
        charger = self.charger
        now = self._clock()
        if (
            charger is None
            or charger.amps is None
            or charger.updated_at is None
            or now - charger.updated_at >= CHARGER_FRESH_S
        ):
            return 0.0, None, "none"
        low, high = VOLTAGE_RANGE_V
        meter_v = None if self.meter is None else self.meter.mean_voltage_v
        if charger.voltage is not None and low <= charger.voltage <= high:
            volts, source = charger.voltage, "charger"
        elif meter_v is not None and low <= meter_v <= high:
            volts, source = meter_v, "meter"
        else:
            volts, source = NOMINAL_VOLTAGE_V, "nominal"
        return charger.amps * volts, volts, source

    def spares_the_charger(self) -> bool:
        """The stale guard would pause, but the charger is in normal mode: someone's
        deliberate charge, which p1evse leaves alone (see `PauseIntent`)."""
        return self.charger is not None and not self.charger.pause_allowed(self._clock())

    def unhealthy(self, now: float) -> str | None:
        """Why the service is not doing its job, in one line; None when it is."""
        if self.problems:
            return "; ".join(self.problems.values())
        broker = self.links["broker"]
        if broker.state is not LinkState.CONNECTED:
            return f"{broker.detail}: {broker.state.value}"
        stale_after = self._publish.stale_after
        if self.meter is None:
            return f"no reading since start-up {now - self.started:.0f} s ago"
        age = now - self.meter.at
        if self.stale is not None or age >= stale_after:
            return f"no valid reading for {age:.0f} s (stale_after {stale_after:g} s)"
        failing_for = now - self._charger_failing_since
        if self._charger_failing is not None and failing_for >= stale_after:
            # the charger has had no value for as long as a silent meter may be
            via = self._route.via
            return f"{via}: failing for {failing_for:.0f} s: {self._charger_failing}"
        return None

    # -- JSON ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-ready data: what /api/state returns. No secrets: only
        values, topics and host:port, never credentials or tokens."""
        now = self._clock()
        epoch = self._epoch_offset(now)
        publish = self._publish
        meter = self.meter
        published = self.published
        stale = self.stale
        return {
            "site": self.name,
            "version": __version__,
            "now": round(now + epoch, 3),
            "meter": None
            if meter is None
            else {
                "at": round(meter.at + epoch, 3),
                "age_s": round(now - meter.at, 3),
                "net_w": round(meter.net_w),
                "import_w": round(meter.import_w),
                "export_w": round(meter.export_w),
                "phases": phases_json(meter),
                "clock": None
                if meter.meter_time is None or self.meter_clock_offset_s is None
                else {
                    "time": meter.meter_time.isoformat(),
                    "offset_s": round(self.meter_clock_offset_s, 1),
                },
            },
            "sim_clock": None if self.sim_clock is None else self.sim_clock(),
            "published": None
            if published is None
            else {
                "at": round(published.at + epoch, 3),
                "age_s": round(now - published.at, 3),
                "watts": published.watts,
                "readings": published.readings,
                "over_s": None
                if self.published_over_s is None
                else round(self.published_over_s, 1),
                "failsafe": published.failsafe,
                "held": published.held,
                "to": self._route.sent_to,
            },
            "stale": None
            if stale is None
            else {
                "since": round(stale.at + epoch, 3),
                "for_s": round(self.quiet_for(now), 3),
                "action": stale.action.value,
                "charger_spared": stale.action is StaleAction.PAUSE and self.spares_the_charger(),
            },
            "links": {
                "source": _link_json(self.source_link(), epoch),
                **{name: _link_json(link, epoch) for name, link in self.links.items()},
                "charger": _link_json(self.charger_link(now), epoch),
            },
            "charger": self._charger_json(now, epoch),
            "pause": {
                "claimed": self.pause_periods.open,
                "since": _since(self.pause_periods, epoch),
            },
            "car": self._car_json(),
            "energy": self.energy.json(now + epoch),
            "periods": {
                "stale": _periods(self.stale_periods, epoch),
                "paused": _periods(self.pause_periods, epoch),
            },
            "counters": {
                "readings": self.counters.readings,
                "published": self.counters.published,
                "rejected": {
                    reason.value: count for reason, count in self.counters.rejected.items()
                },
                "stale_entered": self.counters.stale_entered,
                "stale_s": round(self.stale_seconds(now), 3),
            },
            "problems": sorted(self.problems.values()),
            "last_rejection": None
            if self.last_rejection is None
            else {
                "at": round(self.last_rejection.at + epoch, 3),
                "reason": self.last_rejection.reason.value,
                "detail": self.last_rejection.detail,
            },
            "config": {
                "interval_s": publish.interval,
                "mode": publish.mode,
                "step_w": publish.step_w,
                "band_w": publish.band_w,
                "stale_after_s": publish.stale_after,
                "on_stale": publish.on_stale.value,
                "failsafe_import_w": publish.failsafe_import_w,
                "reserve_w": publish.reserve_w,
                "transport": self._route.transport,
                "sent_to": self._route.sent_to,
                "claim_to": self._route.claim_to,
            },
        }

    def _charger_json(self, now: float, epoch: float) -> dict[str, Any] | None:
        charger = self.charger
        if charger is None or charger.updated_at is None:
            return None
        return {
            "at": round(charger.updated_at + epoch, 3),
            "age_s": round(now - charger.updated_at, 3),
            "state": charger.state,
            "state_text": None if charger.state is None else describe_state(charger.state),
            "mode": None if charger.divertmode is None else charger.divertmode.name.lower(),
            "current_a": None if charger.amps is None else round(charger.amps, 2),
            "pilot_a": charger.pilot,
            "charge_rate_a": charger.charge_rate,
            "divert_active": charger.divert_active,
        }

    def _car_json(self) -> dict[str, Any] | None:
        watts, volts, source = self.car_power()
        if volts is None:
            return None
        return {"power_w": round(watts), "voltage_v": round(volts, 1), "voltage_from": source}

    def history_json(
        self, since: int | None = None, range_: HistoryRange = "hour"
    ) -> dict[str, Any]:
        """The chart's rows compactly: row k is at `t0 + k * step_s` (epoch seconds),
        with the meter's mean W, the value sent (W) and the charger's current (A);
        trailing nulls are left out (most seconds have only a meter reading), which
        keeps a full hour well under 100 kB. "hour": the last hour at 1 s, all or from
        bucket `since` on; "today": a row a minute since local midnight."""
        now = self._clock()
        epoch = self._epoch_offset(now)
        history = self.history
        if range_ == "today":
            history = self.day
            since = history.bucket(self._day_start(now + epoch) - epoch)
        rows = history.rows(since)
        if not rows:
            return {"t0": None, "step_s": history.step_s, "rows": []}
        first = rows[0].at
        return {
            "t0": round(first + epoch, 3),
            "step_s": history.step_s,
            "rows": [
                _trimmed(
                    [
                        round((row.at - first) / history.step_s),
                        None if row.meter_w is None else round(row.meter_w),
                        None if row.published_w is None else round(row.published_w),
                        None if row.charger_a is None else round(row.charger_a, 1),
                    ]
                )
                for row in rows
            ],
        }

    def _epoch_offset(self, now: float) -> float:
        """Add to a time on the pipeline's clock to get Unix time."""
        return self._wall() - now


class CarEnergy:
    """Today's energy to the car, split into solar and grid: while the car draws C W and
    the meter shows P W (+ import), min(max(P, 0), C) comes from the grid and the rest
    from solar; summed over time since local midnight or start-up, whichever is later."""

    def __init__(self, day_start: Callable[[float], float], started: float) -> None:
        self._day_start = day_start
        self._started = started  # Unix time the sums begin: start-up, or a midnight
        self.day = -1.0  # the start of the day the sums are for (none yet)
        self._day_end = -1.0
        self.solar_wh = 0.0
        self.grid_wh = 0.0

    def add(self, meter_w: float, car_w: float, start: float, end: float) -> None:
        """Power held from `start` to `end` (Unix time: the caller converts with the
        wall clock as it is now, which may have been set since start-up)."""
        if not self.day <= end < self._day_end:
            self.day = self._day_start(end)
            self._day_end = self._day_start(self.day + 1.1 * DAY_S)  # a DST day too
            self._started = max(self._started, self.day)
            self.solar_wh = self.grid_wh = 0.0
        hours = (end - max(start, self._started)) / 3600
        if hours <= 0 or car_w <= 0:
            return
        grid_w = min(max(meter_w, 0.0), car_w)
        self.grid_wh += grid_w * hours
        self.solar_wh += (car_w - grid_w) * hours

    def json(self, now_epoch: float) -> dict[str, Any]:
        today = self.day <= now_epoch < self._day_end
        return {
            "since": round(max(self._started, self._day_start(now_epoch)), 3),
            "since_start_up": self._started > self._day_start(now_epoch),
            "solar_kwh": round(self.solar_wh / 1000, 3) if today else 0.0,
            "grid_kwh": round(self.grid_wh / 1000, 3) if today else 0.0,
        }


def _since(periods: Intervals, epoch: float) -> float | None:
    if not periods.open:
        return None
    start, _ = periods.periods()[-1]
    return round(start + epoch, 3)


def _periods(periods: Intervals, epoch: float) -> list[list[float | None]]:
    """[start, end] in Unix time, end null while it lasts."""
    return [
        [round(start + epoch, 3), None if end is None else round(end + epoch, 3)]
        for start, end in periods.periods()
    ]


def _trimmed(row: list[float | None]) -> list[float | None]:
    while row[-1] is None:
        row.pop()
    return row


def _link_json(link: Link, epoch: float) -> dict[str, Any]:
    return {
        "state": link.state.value,
        "detail": link.detail,
        "since": None if link.since is None else round(link.since + epoch, 3),
    }


def phases_json(meter: Reading) -> dict[str, Any] | None:
    """Per-phase values (L1, L2, L3; null where the meter does not say), if any."""
    phases = {
        "import_w": meter.phase_import_w,
        "export_w": meter.phase_export_w,
        "voltage_v": meter.phase_voltage_v,
    }
    known = {key: [_round(v) for v in values] for key, values in phases.items() if values}
    return known or None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
