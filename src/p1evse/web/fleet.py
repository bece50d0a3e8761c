"""A fleet's status server: its sites a page at a time, a page per site, the fleet's
summary, /metrics and /healthz. Everything is read from a `SitesView` when asked.

    /                the fleet's page: its summary and its sites, filtered and paged
    /site/<id>       one site's page: its values and the values sent in its last hour
    /api/state       the fleet's summary
    /api/sites       ?offset=0&limit=100&stale=true|false&charging=true|false
    /api/sites/<id>  one site, with its last hour at 10 s
    /metrics         Prometheus text: the fleet's totals, and per site (label `site`)
                     while there are at most web.site_metrics sites
    /healthz         200 "ok ..." or 503 with the reason, one line
"""

from __future__ import annotations

import platform
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from p1evse import __version__
from p1evse.settings import SITE_ID, SITE_ID_RULE
from p1evse.web.http import HttpError, Request, Response, Routes
from p1evse.web.metrics import counter_families, exposition, loop_families
from p1evse.web.server import (
    NO_STORE,
    PAGE_CACHE,
    StatusServer,
    json_response,
    text_response,
)

if TYPE_CHECKING:
    import asyncio

    from p1evse.counts import Count
    from p1evse.loopwatch import LoopWatch
    from p1evse.web.settings import ListenAddress, WebSettings

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class SiteValues(Protocol):
    @property
    def site(self) -> str: ...
    @property
    def watts(self) -> int | None: ...
    @property
    def stale(self) -> bool: ...
    @property
    def amps(self) -> float | None: ...


class SitesView(Protocol):
    """What the server reads of a fleet (`p1evse.fleet.view.FleetView`)."""

    def problem(self) -> str | None: ...

    def health(self) -> str: ...

    def summary(self) -> dict[str, Any]: ...

    def page(
        self, offset: int, limit: int, stale: bool | None, charging: bool | None
    ) -> dict[str, Any]: ...

    def site(self, site_id: str) -> dict[str, Any] | None: ...

    def counts(self) -> list[Count]: ...

    def site_values(self) -> Iterator[SiteValues]: ...


class FleetWebServer(StatusServer):
    def __init__(
        self,
        settings: WebSettings,
        address: ListenAddress,
        view: SitesView,
        loop: asyncio.AbstractEventLoop,
        loop_watch: LoopWatch,
    ) -> None:
        super().__init__(settings, address, loop)
        self._view = view
        self.registry = CollectorRegistry()
        self.registry.register(_FleetCollector(view, self, settings.site_metrics, loop_watch))
        ProcessCollector(registry=self.registry)

    def _routes(self, routes: Routes) -> None:
        routes.get("/", self._fleet_page)
        routes.under("/site/", self._site_page)
        routes.get("/api/state", self._api_state)
        routes.get("/api/sites", self._api_sites)
        routes.under("/api/sites/", self._api_site)
        routes.get("/metrics", self._metrics)
        routes.get("/healthz", self._healthz)

    async def _fleet_page(self, request: Request) -> Response:
        return self._file("fleet.html", request, PAGE_CACHE)

    async def _site_page(self, request: Request) -> Response:
        """The page of `/site/<id>`, for an id that can be one; `/site/<id>/` is sent
        there (the page's own paths are relative to it)."""
        site_id = request.tail
        if site_id.endswith("/") and SITE_ID.fullmatch(site_id[:-1]):
            query = f"?{request.raw_query}" if request.raw_query else ""
            return Response(status=308, headers={"Location": f"/site/{site_id[:-1]}{query}"})
        if SITE_ID.fullmatch(site_id) is None:
            raise HttpError(404, f"no such page: a site's is /site/<id>, the id {SITE_ID_RULE}\n")
        return self._file("site.html", request, PAGE_CACHE)

    async def _api_state(self, request: Request) -> Response:
        return json_response(self._view.summary())

    async def _api_sites(self, request: Request) -> Response:
        query = request.query
        offset = _number(query, "offset", 0, 0, 10**9)
        limit = _number(query, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        return json_response(
            self._view.page(offset, limit, _flag(query, "stale"), _flag(query, "charging"))
        )

    async def _api_site(self, request: Request) -> Response:
        site = self._view.site(request.tail)
        if site is None:
            raise HttpError(404, "no such site is served here\n", NO_STORE)
        return json_response(site)

    async def _metrics(self, request: Request) -> Response:
        return exposition(self.registry, request.headers)

    async def _healthz(self, request: Request) -> Response:
        problem = self._view.problem()
        if problem is not None:
            return text_response(f"unhealthy: {problem}\n", 503)
        return text_response(f"ok: {self._view.health()}\n")


def _number(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    # digits only: int() would also take "1_0", " 1" and other scripts' digits
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(high))
    value = int(text) if digits else low - 1
    if not low <= value <= high:
        wanted = f"a whole number from {low} to {high}"
        raise HttpError(400, f"{name} must be {wanted}, not {text[:40]!r}\n", NO_STORE)
    return value


def _flag(query: Mapping[str, str], name: str) -> bool | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise HttpError(400, f"{name} must be true or false, not {text[:40]!r}\n", NO_STORE)


class _FleetCollector:
    def __init__(
        self, view: SitesView, server: StatusServer, site_limit: int, loop_watch: LoopWatch
    ) -> None:
        self._view = view
        self._server = server
        self._site_limit = site_limit
        self._loop_watch = loop_watch

    def collect(self) -> Iterator[Metric]:
        view = self._view
        info = InfoMetricFamily("p1evse_build", "Version of p1evse and of Python")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info
        yield from counter_families([*view.counts(), *self._server.port.counts()])
        fleet = view.summary()["fleet"]
        for name, text in (
            ("sites", "Sites served by this process"),
            ("stale", "Sites whose stale guard is active"),
            ("paused", "Sites whose charger holds the pause claim"),
            ("charging", "Sites whose charger says it is charging"),
        ):
            yield GaugeMetricFamily(f"p1evse_fleet_{name}", text, value=fleet[name])
        yield from loop_families(self._loop_watch)
        yield GaugeMetricFamily(
            "p1evse_up",
            "1 while the fleet can serve (what /healthz says)",
            value=int(view.problem() is None),
        )
        per_site = fleet["sites"] <= self._site_limit
        yield GaugeMetricFamily(
            "p1evse_fleet_site_series",
            "1 while the series per site are exported (at most web.site_metrics sites)",
            value=int(per_site),
        )
        if not per_site:
            return
        watts = GaugeMetricFamily(
            "p1evse_site_published_watts",
            "The last value sent to the site's charger, W",
            labels=["site"],
        )
        stale = GaugeMetricFamily(
            "p1evse_site_stale", "1 while the site's stale guard is active", labels=["site"]
        )
        amps = GaugeMetricFamily(
            "p1evse_site_charger_current_amps",
            "The current the site's car draws, as its charger last reported it",
            labels=["site"],
        )
        for values in view.site_values():
            stale.add_metric([values.site], int(values.stale))
            if values.watts is not None:
                watts.add_metric([values.site], values.watts)
            if values.amps is not None:
                amps.add_metric([values.site], values.amps)
        yield from (watts, stale, amps)
