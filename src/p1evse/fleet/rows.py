"""A site of a fleet as its page and its state topic show it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from p1evse.sinks.charger import describe_state

if TYPE_CHECKING:
    from p1evse.fleet.records import SiteRecord
    from p1evse.site import Site


def site_row(site_id: str, site: Site, record: SiteRecord, now: float) -> dict[str, Any]:
    """A site as the fleet's page and its state topic show it."""
    pipeline = site.pipeline
    charger = site.charger
    return {
        "id": site_id,
        "stale": pipeline.stale,
        "paused": site.holds_pause,
        "watts": record.watts,
        "sent_age_s": _age(now, record.sent_at),
        "reading_age_s": _age(now, pipeline.last_valid_at if pipeline.last_reading else None),
        "charger": {
            "amps": charger.amps,
            "pilot": charger.pilot,
            "state": describe_state(charger.state) if charger.state is not None else None,
        },
    }


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 1)
