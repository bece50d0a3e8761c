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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from p1evse import __version__
from p1evse.history import History
from p1evse.model import Event, GridPower, Reading, Rejected, StaleEntered, StaleLeft

if TYPE_CHECKING:
    from p1evse.config import Settings
    from p1evse.pipeline import Counters

Clock = Callable[[], float]


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
        settings: Settings,
        counters: Counters,
        clock: Clock,
        wall: Clock = time.time,
        name: str = "p1evse",
    ) -> None:
        self.name = name
        self._settings = settings
        self.counters = counters
        self._clock = clock
        self._wall = wall
        self.started = clock()
        self.history = History()
        self.listeners: list[Callable[[], None]] = []
        self.meter: Reading | None = None
        self.published: GridPower | None = None
        self.stale: StaleEntered | None = None
        self.last_rejection: Rejected | None = None
        self._stale_closed_s = 0.0  # time spent stale in gaps that have ended
        mqtt = settings.mqtt
        self.links = {
            "broker": Link(LinkState.CONNECTING, f"MQTT {mqtt.host}:{mqtt.port}"),
            "charger": Link(LinkState.UNKNOWN, "p1evse does not read the charger's state yet"),
        }

    # -- inputs ----------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """A Bridge observer: record the event (no I/O, no waiting)."""
        if isinstance(event, Reading):
            self.meter = event
            self.history.add_meter(event.at, event.net_w)
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

    def link_changed(self, name: str, state: LinkState) -> None:
        link = self.links[name]
        link.state = state
        link.since = self._clock()
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # -- derived -------------------------------------------------------------------

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
        source = self._settings.source
        detail = f"{source.type}: {', '.join(source.subscriptions())}"
        if self.stale is not None:
            return Link(LinkState.DISCONNECTED, detail, self.stale.at)
        if self.meter is None:
            return Link(LinkState.CONNECTING, detail, self.started)
        return Link(LinkState.CONNECTED, detail)

    def unhealthy(self, now: float) -> str | None:
        """Why the service is not doing its job, in one line; None when it is."""
        broker = self.links["broker"]
        if broker.state is not LinkState.CONNECTED:
            return f"{broker.detail}: {broker.state.value}"
        stale_after = self._settings.publish.stale_after
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
        settings = self._settings
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
            },
            "published": None
            if published is None
            else {
                "at": round(published.at + epoch, 3),
                "age_s": round(now - published.at, 3),
                "watts": published.watts,
                "readings": published.readings,
                "failsafe": published.failsafe,
                "topic": settings.openevse.grid_ie_topic,
            },
            "stale": None
            if stale is None
            else {
                "since": round(stale.at + epoch, 3),
                "for_s": round(self.quiet_for(now), 3),
                "action": stale.action.value,
            },
            "links": {
                "source": _link_json(self.source_link(), epoch),
                **{name: _link_json(link, epoch) for name, link in self.links.items()},
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
            "last_rejection": None
            if self.last_rejection is None
            else {
                "at": round(self.last_rejection.at + epoch, 3),
                "reason": self.last_rejection.reason.value,
                "detail": self.last_rejection.detail,
            },
            "config": {
                "interval_s": settings.publish.interval,
                "stale_after_s": settings.publish.stale_after,
                "on_stale": settings.publish.on_stale.value,
                "failsafe_import_w": settings.publish.failsafe_import_w,
                "reserve_w": settings.publish.reserve_w,
                "grid_ie_topic": settings.openevse.grid_ie_topic,
                "claim_topic": settings.openevse.claim_topic,
            },
        }

    def history_json(self, since: int | None = None) -> dict[str, Any]:
        """The chart's rows (all, or from bucket `since` on) compactly: row k is at
        `t0 + k * step_s` (epoch seconds), with the meter's mean W and the value sent."""
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
                [
                    round((row.at - first) / history.step_s),
                    None if row.meter_w is None else round(row.meter_w),
                    None if row.published_w is None else round(row.published_w),
                ]
                for row in rows
            ],
        }

    def _epoch_offset(self, now: float) -> float:
        """Add to a time on the pipeline's clock to get Unix time."""
        return self._wall() - now


def _link_json(link: Link, epoch: float) -> dict[str, Any]:
    return {
        "state": link.state.value,
        "detail": link.detail,
        "since": None if link.since is None else round(link.since + epoch, 3),
    }
