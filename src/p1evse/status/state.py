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
from typing import TYPE_CHECKING, Any

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
from p1evse.sinks.charger import describe_state
from p1evse.status.history import History

if TYPE_CHECKING:
    from p1evse.counts import Count, Counted
    from p1evse.pipeline import Counters, PublishSettings
    from p1evse.sinks.charger import ChargerRoute, ChargerState

Clock = Callable[[], float]

# The charger reports on change and OpenEVSE considers a feed fresh for 120 s; a charger
# silent for longer is shown as such (and its current no longer charted).
CHARGER_FRESH_S = 120.0
CHARGER_CHART_PERIOD_S = 10.0  # shorter than any stale_after that breaks the chart's lines


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
        self.listeners: list[Callable[[], None]] = []  # told after every change
        self.meter: Reading | None = None
        # the meter's clock minus ours when its last reading came, if it says its time
        self.meter_clock_offset_s: float | None = None
        self.published: GridPower | None = None
        self.stale: StaleEntered | None = None
        self.last_rejection: Rejected | None = None
        # what keeps a part of the service from working, by part (a failed task, ...)
        self.problems: dict[str, str] = {}
        self._stale_closed_s = 0.0  # time spent stale in gaps that have ended
        self._charted_amps: float | None = None
        self._charted_at = 0.0
        self.links = {"broker": Link(LinkState.CONNECTING, broker_detail)}

    # -- inputs ----------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """A Bridge observer: record the event (no I/O, no waiting)."""
        if isinstance(event, Reading):
            self.meter = event
            if event.meter_time is not None:
                self.meter_clock_offset_s = event.meter_time.timestamp() - self._wall()
            self.history.add_meter(event.at, event.net_w)
            self._chart_charger(event.at)
        elif isinstance(event, GridPower):
            self.published = event
            self.history.add_published(event.at, event.watts)
        elif isinstance(event, StaleEntered):
            self.stale = event
        elif isinstance(event, StaleLeft):
            if self.stale is not None:
                self._stale_closed_s += event.at - self.stale.at
            self.stale = None
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
            self._charted_amps, self._charted_at = amps, at

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

    def spares_the_charger(self) -> bool:
        """The stale guard would pause, but the charger is in normal mode: someone's
        deliberate charge, which p1evse leaves alone (see `PauseIntent`)."""
        return self.charger is not None and not self.charger.pause_allowed()

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
            "published": None
            if published is None
            else {
                "at": round(published.at + epoch, 3),
                "age_s": round(now - published.at, 3),
                "watts": published.watts,
                "readings": published.readings,
                "failsafe": published.failsafe,
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

    def history_json(self, since: int | None = None) -> dict[str, Any]:
        """The chart's rows (all, or from bucket `since` on) compactly: row k is at
        `t0 + k * step_s` (epoch seconds), with the meter's mean W, the value sent (W)
        and the charger's current (A); trailing nulls are left out (most seconds have
        only a meter reading), which keeps a full hour well under 100 kB."""
        history = self.history
        rows = history.rows(since)
        epoch = self._epoch_offset(self._clock())
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
