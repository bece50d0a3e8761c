"""The status page in a real browser (tests/browsers.py), against a running app with a
real broker behind it. Screenshots land in test-artifacts/."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page

from tests.brokers import BrokerProcess
from tests.browsers import ARTIFACTS
from tests.payloads import DELIVERED, RETURNED
from tests.test_web import Site, serving, web_settings

WAIT_MS = 5000


class Watched:
    """A page with everything it requested and every error it reported."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def assert_clean(self, site: Site) -> None:
        """Nothing from elsewhere was asked for, and nothing (a CSP violation included)
        went wrong."""
        assert self.requests
        assert all(url.startswith(site.url) for url in self.requests), self.requests
        assert self.errors == []


async def open_page(browser: Browser, site: Site, path: str = "", **context: object) -> Watched:
    page = await (await browser.new_context(**context)).new_page()  # type: ignore[arg-type]
    watched = Watched(page)
    response = await page.goto(site.url + path)
    assert response is not None
    assert response.status == 200
    await page.wait_for_selector("#live[data-state=live]", timeout=WAIT_MS)
    return watched


# Predicates are functions: a string expression would be eval'd in the page, which its
# Content-Security-Policy (rightly) forbids.
SENT_IS = "watts => document.getElementById('sent-value').dataset.watts === String(watts)"
MORE_POINTS = "before => Number(document.getElementById('chart').dataset.sentPoints) > before"


async def shows_sent(page: Page, watts: int) -> None:
    await page.wait_for_function(SENT_IS, arg=watts, timeout=WAIT_MS)


async def points(page: Page) -> int:
    return int(await page.eval_on_selector("#chart", "c => c.dataset.sentPoints || '0'"))


async def next_bucket(site: Site) -> None:
    """Pace the next reading into the chart's next bucket (one a second)."""
    step = site.state.history.step_s
    loop = asyncio.get_running_loop()
    await asyncio.sleep(step - loop.time() % step + 0.02)


async def test_page_shows_the_value_just_published_and_the_chart_grows_live(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    async with serving(web_settings(one_broker)) as site:
        for field, payload in (("amp", "9500"), ("state", "3"), ("divertmode", "2")):
            site.probe.publish(f"openevse/{field}", payload)
        await site.send(RETURNED, "1.234", "-1234")
        watched = await open_page(browser, site, viewport={"width": 1280, "height": 900})
        page = watched.page
        await shows_sent(page, -1234)
        assert await page.inner_text("#sent-value") == "\u22121.23 kW"
        assert await page.inner_text("#grid-value") == "1.23 kW"
        assert await page.inner_text("#direction") == "Exporting to the grid"
        assert await page.inner_text("#export") == "1.23 kW"
        assert await page.get_attribute("#link-broker", "data-state") == "connected"
        assert await page.get_attribute("#link-charger", "data-state") == "connected"
        assert (await page.inner_text("#link-charger .detail")).endswith("charging · 9.5 A")
        assert await page.is_visible("#legend-charger")  # the charger's current is charted
        assert await page.is_hidden("#stale")
        before = await points(page)
        assert before >= 1

        await page.evaluate("window.notReloaded = true")
        await next_bucket(site)
        await site.send(DELIVERED, "2.500", "2500")
        await page.wait_for_function(MORE_POINTS, arg=before, timeout=WAIT_MS)
        await shows_sent(page, 2500)
        assert await page.inner_text("#direction") == "Importing from the grid"
        assert await page.inner_text("#grid-value") == "2.50 kW"
        assert await page.evaluate("window.notReloaded") is True
        await page.screenshot(path=ARTIFACTS / "status-page-desktop.png", full_page=True)
        watched.assert_clean(site)


async def test_stale_banner_comes_when_readings_stop_and_goes_when_they_resume(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    settings = web_settings(one_broker, publish={"stale_after": 1.0, "pair_window": 0.1})
    async with serving(settings) as site:
        watched = await open_page(browser, site, color_scheme="dark")
        page = watched.page
        # nothing read since start-up: stale within a second
        await page.wait_for_selector("#stale", state="visible", timeout=WAIT_MS)
        assert await page.inner_text("#stale-title") == "No meter reading since start-up"
        assert "Charging is paused" in await page.inner_text("#stale-text")
        assert "openevse/claim/set" in await page.inner_text("#stale-text")
        await site.send(DELIVERED, "0.400", "400")
        await page.wait_for_selector("#stale", state="hidden", timeout=WAIT_MS)
        await shows_sent(page, 400)
        assert await page.get_attribute("#link-source", "data-state") == "connected"
        # the readings stop again
        await page.wait_for_selector("#stale", state="visible", timeout=WAIT_MS)
        assert (await page.inner_text("#stale-title")).startswith("No meter reading for ")
        assert await page.get_attribute("#link-source", "data-state") == "disconnected"
        await page.screenshot(path=ARTIFACTS / "status-page-stale-dark.png", full_page=True)
        watched.assert_clean(site)


async def test_page_works_on_a_phone(one_broker: BrokerProcess, browser: Browser) -> None:
    async with serving(web_settings(one_broker)) as site:
        await site.send(DELIVERED, "0.850", "850")
        watched = await open_page(
            browser,
            site,
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        page = watched.page
        await shows_sent(page, 850)
        assert await page.inner_text("#grid-value") == "850 W"
        assert await page.inner_text("#direction") == "Importing from the grid"
        # nothing sideways to scroll, the big number big, the chart within the screen
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        size = await page.eval_on_selector(
            "#grid-value", "e => parseFloat(getComputedStyle(e).fontSize)"
        )
        assert size >= 40
        for selector in ("#grid-value", "#sent-value", "#chart", "#link-charger"):
            box = await page.locator(selector).bounding_box()
            assert box is not None, selector
            assert box["x"] >= 0, selector
            assert box["x"] + box["width"] <= 390, selector
        chart = await page.locator("#chart").bounding_box()
        assert chart is not None
        assert chart["width"] > 300
        assert await points(page) >= 1
        await page.screenshot(path=ARTIFACTS / "status-page-phone.png", full_page=True)
        watched.assert_clean(site)


async def test_page_with_a_token(one_broker: BrokerProcess, browser: Browser) -> None:
    settings = web_settings(one_broker, web={"token": "page-t0ken-0123456789"})
    async with serving(settings) as site:
        await site.send(RETURNED, "0.300", "-300")
        watched = await open_page(browser, site, "?token=page-t0ken-0123456789")
        await shows_sent(watched.page, -300)  # the page passed the token to its stream
        watched.assert_clean(site)
        refused = await watched.page.goto(site.url)
        assert refused is not None
        assert refused.status == 401


@pytest.mark.slow  # the page's own retry waits 5-10 s
async def test_a_page_refused_a_live_stream_goes_live_once_there_is_room(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    """web.max_streams reached: the browser's EventSource gives a 503 up for good, so
    the page itself tries again."""
    async with serving(web_settings(one_broker, web={"max_streams": 1})) as site:
        first = await open_page(browser, site)
        second = await (await browser.new_context()).new_page()
        await second.goto(site.url)
        await second.wait_for_selector("#live[data-state=lost]", timeout=WAIT_MS)
        await first.page.close()
        await second.wait_for_selector("#live[data-state=live]", timeout=30_000)
