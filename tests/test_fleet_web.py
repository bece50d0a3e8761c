"""A fleet's status server over real HTTP, and its pages in a real browser: the summary,
the sites a page at a time and filtered, one site with its last hour, /metrics per site
up to its limit, and /healthz."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from playwright.async_api import Browser
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from p1evse.app import FleetApp
from p1evse.sim.broker import free_port
from tests.brokers import BrokerProcess
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.test_fleet import (
    DELIVERED,
    GRID_IE,
    RETURNED,
    collect,
    fleet_running,
    fleet_settings,
)
from tests.test_page import WAIT_MS, Watched

TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class Served:
    app: FleetApp
    url: str
    probe: Probe
    http: aiohttp.ClientSession

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.text()

    async def json(self, path: str) -> Any:
        status, body = await self.get(path)
        assert status == 200, body
        return json.loads(body)

    async def feed(self, values: dict[str, int]) -> None:
        """A reading for each site (W, + import, - export); returns once each value
        is sent."""
        for site, watts in values.items():
            topic = DELIVERED if watts >= 0 else RETURNED
            self.probe.publish(topic.format(site), str(abs(watts)))
        await collect(self.probe, GRID_IE, len(values))


@asynccontextmanager
async def served(broker: BrokerProcess, **web: Any) -> AsyncIterator[Served]:
    listen = f"127.0.0.1:{free_port()}"
    settings = fleet_settings(broker, web={"listen": listen, **web})
    async with (
        fleet_running(settings) as app,
        Probe(broker.port) as probe,
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
    ):
        await probe.subscribe(GRID_IE)
        await probe.subscribe("p1evse/status")
        await probe.wait_for_payload("p1evse/status", "online")
        assert app.web is not None
        await asyncio.wait_for(app.web.listening.wait(), EVENT_TIMEOUT_S)
        yield Served(app, f"http://{listen}/", probe, http)


async def test_the_sites_a_page_at_a_time_filtered_and_one_with_its_hour(
    one_broker: BrokerProcess,
) -> None:
    async with served(one_broker) as fleet:
        await fleet.feed({f"h{n:02d}": 100 + n for n in range(30)})
        state = await fleet.json("api/state")
        assert state["fleet"]["sites"] == 30
        assert state["fleet"]["stale"] == 0
        assert state["broker"]["connected"] is True
        page = await fleet.json("api/sites?offset=10&limit=5")
        assert page["total"] == 30
        assert [site["id"] for site in page["sites"]] == [f"h{n}" for n in range(10, 15)]
        assert page["sites"][0]["watts"] == 110
        assert (await fleet.json("api/sites?stale=true"))["total"] == 0
        assert (await fleet.json("api/sites?stale=false&charging=false"))["total"] == 30
        fleet.probe.publish("openevse/h07/state", "3")  # its charger says: charging
        await fleet.feed({"h07": 107})  # in after it, on the same connection
        assert (await fleet.json("api/sites?charging=true"))["total"] == 1
        one = await fleet.json("api/sites/h07")
        assert (one["id"], one["watts"], one["charger"]["state"]) == ("h07", 107, "charging")
        rows = one["history"]["rows"]
        assert len(rows) == 360
        assert one["history"]["step_s"] == 10
        assert rows[-1][1] == 107
        assert all(watts is None for _, watts in rows[:-2])
        for bad in ("limit=0", "limit=1001", "offset=-1", "offset=x", "offset=1_0", "stale=maybe"):
            status, body = await fleet.get(f"api/sites?{bad}")
            assert status == 400, bad
            assert body.split()[0] in bad
        assert (await fleet.get("api/sites/nobody"))[0] == 404
        # a site's page is at /site/<id>, and nothing else under /site/ is a page
        for path in ("site/h07/x", "site/", "site/%E0%A4%A", "site/h07//", "site/-h"):
            assert (await fleet.get(path))[0] == 404, path
        for path, to in (
            ("site/h07/", "/site/h07"),
            (
                "site/h07/?token=a%25b&a=1&a=2&flag&x=%zz",
                "/site/h07?token=a%25b&a=1&a=2&flag&x=%zz",
            ),
        ):
            async with fleet.http.get(
                URL(fleet.url + path, encoded=True), allow_redirects=False
            ) as response:
                assert (response.status, response.headers["Location"]) == (308, to)
        status, body = await fleet.get("healthz")
        assert (status, body) == (200, "ok: broker connected, 30 sites, 0 stale\n")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_have_a_series_per_site_up_to_the_limit(one_broker: BrokerProcess) -> None:
    async with served(one_broker, site_metrics=3) as fleet:
        await fleet.feed({"a": 10, "b": -20, "c": 30})
        status, text = await fleet.get("metrics")
        assert status == 200
        found = samples(text)
        assert found[("p1evse_site_published_watts", (("site", "b"),))] == -20
        assert found[("p1evse_site_stale", (("site", "a"),))] == 0
        assert found[("p1evse_fleet_sites", ())] == 3
        assert found[("p1evse_fleet_sites_created_total", ())] == 3
        assert found[("p1evse_fleet_site_series", ())] == 1
        assert ("p1evse_loop_lag_max_seconds", ()) in found
        assert ("p1evse_loop_lag_seconds_count", ()) in found
        await fleet.feed({"d": 40})  # one more than the limit: the totals only
        found = samples((await fleet.get("metrics"))[1])
        assert found[("p1evse_fleet_sites", ())] == 4
        assert found[("p1evse_fleet_site_series", ())] == 0
        assert not [name for name, _ in found if name.startswith("p1evse_site_")]


async def test_the_fleets_pages_in_a_browser(one_broker: BrokerProcess, browser: Browser) -> None:
    async with served(one_broker) as fleet:
        await fleet.feed({"north": 1500, "south": -2300})
        page = await (await browser.new_context()).new_page()
        watched = Watched(page)
        await page.goto(fleet.url)
        await page.wait_for_selector("tr[data-site=south]", timeout=WAIT_MS)
        assert await page.text_content("#sites-count") == "2 of at most 10000"
        assert await page.text_content("tr[data-site=south] td.num") == "-2,300 W"
        await page.click("tr[data-site=north] a")
        await page.wait_for_selector("#live[data-state=live]", timeout=WAIT_MS)
        assert page.url == fleet.url + "site/north"
        sent = await page.text_content("#sent")
        assert sent is not None
        assert re.fullmatch(r"\+1,500 W, \d+ s ago", sent)
        assert await page.locator("#chart canvas").count() == 1
        await page.goto(fleet.url + "site/north/")  # sent to the page itself
        await page.wait_for_selector("#live[data-state=live]", timeout=WAIT_MS)
        assert page.url == fleet.url + "site/north"
        await page.goto(fleet.url + "site/elsewhere")
        await page.wait_for_selector("#missing:not([hidden])", timeout=WAIT_MS)
        assert all(url.startswith(fleet.url) for url in watched.requests)
        # the 404 of a site not served here is the page's answer, not an error
        assert [error for error in watched.errors if "404" not in error] == []
