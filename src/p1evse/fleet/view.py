"""A fleet as its status server shows it: a summary, the sites a page at a time
(filtered by stale or charging), one site with its last hour, and what /metrics counts.
Everything is read from the sites when asked; nothing is kept for it but the records."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from p1evse.fleet.fleet import sites
from p1evse.fleet.records import HISTORY_STEP_S
from p1evse.fleet.rows import site_row
from p1evse.sinks.charger import EvseState

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.fleet.fleet import Fleet
    from p1evse.mqtt import Broker
    from p1evse.site import Site
    from p1evse.supervise import Supervisor


# a meter dealt to two processes at once is a problem on /healthz this long after
FED_BY_BOTH_SHOWN_S = 60.0


class SiteValues(NamedTuple):
    site: str
    watts: int | None  # the last value sent
    stale: bool
    amps: float | None  # the current the car draws


class FleetView:
    def __init__(
        self,
        fleet: Fleet,
        broker: Broker,
        clock: Callable[[], float],
        supervisor: Supervisor | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._fleet = fleet
        self._broker = broker
        self._clock = clock
        self._supervisor = supervisor
        self._wall = wall

    def problem(self) -> str | None:
        """What keeps the fleet from serving its sites, for /healthz."""
        if not self._broker.connected:
            return "the MQTT broker is not connected"
        refusal = self._broker.stats.refusal()  # deaf to every site's meter, or charger
        if refusal is not None:
            return refusal
        if not self._fleet.ready:
            return "waiting for the broker to return this process's announcement"
        failing = self._supervisor.problems() if self._supervisor is not None else []
        both = self._fleet.fed_by_both
        if both is not None and (age := self._clock() - both[1]) < FED_BY_BOTH_SHOWN_S:
            failing.append(
                f"the broker deals site {both[0]}'s meter to this and another process at "
                f"once ({age:.0f} s ago): fleet.share_group needs a broker that keeps each "
                "meter on one process"
            )
        return "; ".join(failing) or None

    def health(self) -> str:
        stale = self._fleet.totals.stale
        return f"broker connected, {sites(len(self._fleet.sites))}, {stale} stale"

    def _totals(self) -> tuple[int, int, int]:
        """The sites that are stale, paused, charging: the first two kept by the
        fleet, the chargers counted (10,000 sites: 2 ms of the loop)."""
        totals = self._fleet.totals
        return totals.stale, totals.paused, sum(map(_charging, self._fleet.sites.values()))

    def summary(self) -> dict[str, Any]:
        fleet = self._fleet
        members = fleet.members
        stale, paused, charging = self._totals()
        return {
            "fleet": {
                "member": members.me if members is not None else None,
                "members": sorted(members.live) if members is not None else None,
                "shard": str(fleet.settings.shard) if fleet.settings.shard else None,
                "share_group": fleet.settings.share_group,
                "ready": fleet.ready,
                "sites": len(fleet.sites),
                "max_sites": fleet.settings.max_sites,
                "stale": stale,
                "paused": paused,
                "charging": charging,
                "counters": {count.name: count.value for count in fleet.counters.counts()},
            },
            "broker": {"endpoint": self._broker.endpoint, "connected": self._broker.connected},
        }

    def page(
        self, offset: int, limit: int, stale: bool | None, charging: bool | None
    ) -> dict[str, Any]:
        """The sites in order of their ids, `limit` from `offset`, of those that are
        (or are not) stale and charging, as asked."""
        fleet = self._fleet
        ids = sorted(
            site_id
            for site_id, site in fleet.sites.items()
            if (stale is None or site.pipeline.stale == stale)
            and (charging is None or _charging(site) == charging)
        )
        now = self._clock()
        return {
            "total": len(ids),
            "offset": offset,
            "limit": limit,
            "sites": [self._row(site_id, now) for site_id in ids[offset : offset + limit]],
        }

    def site(self, site_id: str) -> dict[str, Any] | None:
        """One site, with the values sent in its last hour, or None if not served."""
        record = self._fleet.records.get(site_id)
        if record is None:
            return None
        now = self._clock()
        to_wall = self._wall() - now
        return {
            **self._row(site_id, now),
            "history": {
                "step_s": HISTORY_STEP_S,
                "rows": [[round(at + to_wall, 1), watts] for at, watts in record.history(now)],
            },
        }

    def counts(self) -> list[Count]:
        return [*self._fleet.counters.counts(), *self._broker.counts()]

    def site_values(self) -> Iterator[SiteValues]:
        """Each site's values for /metrics, in no order."""
        records = self._fleet.records
        for site_id, site in self._fleet.sites.items():
            yield SiteValues(
                site_id, records[site_id].watts, site.pipeline.stale, site.charger.amps
            )

    def _row(self, site_id: str, now: float) -> dict[str, Any]:
        return site_row(site_id, self._fleet.sites[site_id], self._fleet.records[site_id], now)


def _charging(site: Site) -> bool:
    return site.charger.state == EvseState.CHARGING
