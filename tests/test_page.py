"""The status page in a real browser (tests/browsers.py), against a running app with a
real broker behind it. Screenshots land in test-artifacts/.

The chart's tests put past readings into the site's status model directly (on the
pipeline's clock, `loop.time()`), so a chart with a minute or twenty of data needs no
waiting for them."""

from __future__ import annotations

import asyncio
import math

import pytest
from playwright.async_api import Browser, Page

from p1evse.model import GridPower, Reading
from p1evse.status.state import SiteState, local_midnight
from tests.brokers import BrokerProcess
from tests.browsers import ARTIFACTS
from tests.payloads import DELIVERED, RETURNED
from tests.test_web import Site, serving, web_settings

WAIT_MS = 30_000  # generous: a machine ten times slower passes


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
        assert "Charger current" in await page.inner_text(".u-legend")
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
        watched.assert_clean(site)


HELD_SHOWN = "() => document.getElementById('sent-why').textContent.includes('sent before, again')"


async def test_a_held_value_is_explained_as_the_value_sent_before(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    settings = web_settings(one_broker, publish={"mode": "steady", "interval": 1})
    async with serving(settings) as site:

        async def meter() -> None:  # a still house, read four times a second
            while True:
                site.probe.publish(RETURNED, "2.000")
                await asyncio.sleep(0.25)

        reading = asyncio.create_task(meter())
        try:
            watched = await open_page(browser, site)
            await watched.page.wait_for_function(HELD_SHOWN, timeout=WAIT_MS)
        finally:
            reading.cancel()
        why = await watched.page.inner_text("#sent-why")
        assert "readings over the 1 s before it stayed within 80 W of it" in why
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
        for selector in ("#grid-value", "#sent-value", "#chart", "#chart canvas", "#link-charger"):
            box = await page.locator(selector).bounding_box()
            assert box is not None, selector
            assert box["x"] >= 0, selector
            assert box["x"] + box["width"] <= 390, selector
        chart = await page.locator("#chart").bounding_box()
        assert chart is not None
        assert chart["width"] > 300
        assert await points(page) >= 1
        assert await page.is_visible("#chart canvas")
        legend = await page.locator(".u-legend").bounding_box()
        assert legend is not None
        assert legend["y"] >= chart["y"] + 150  # below the chart's drawing
        assert legend["x"] + legend["width"] <= 390
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


def past_readings(
    state: SiteState, seconds: int, *, amps: float = 8.0, watts: float = 1500.0
) -> float:
    """`seconds` of readings a second up to now, a value sent every 5 s, the charger at
    `amps`: what a site has `seconds` after its start. Returns now (the pipeline's
    clock)."""
    now = asyncio.get_running_loop().time()
    charger = state.charger
    assert charger is not None
    for k in range(seconds):
        at = now - seconds + k
        net = watts * math.sin(k / 150) - 300
        charger.amps, charger.updated_at = amps, at
        state.observe(Reading(at, max(net, 0.0), max(-net, 0.0)))
        if k % 5 == 4:
            state.observe(GridPower(at, round(net), 5))
    return now


def dataset(name: str) -> str:
    return f"() => document.getElementById('chart').dataset.{name}"


async def chart_number(page: Page, name: str) -> float:
    return float(await page.evaluate(dataset(name)))


async def open_chart(browser: Browser, site: Site, seconds: int, **context: object) -> Watched:
    """The page on a desktop screen (unless `context` says otherwise), once its chart
    holds the `seconds` of readings that `past_readings` gave the site."""
    context = {"viewport": {"width": 1280, "height": 900}, **context}
    watched = await open_page(browser, site, **context)
    await watched.page.wait_for_function(dataset("meterPoints") + f" >= {seconds}", timeout=WAIT_MS)
    return watched


async def test_a_minute_after_start_the_chart_spans_its_data_not_an_hour(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    async with serving(web_settings(one_broker)) as site:
        past_readings(site.state, 60)
        watched = await open_chart(browser, site, 60)
        page = watched.page
        assert await chart_number(page, "dataSpan") >= 0.8
        span = await chart_number(page, "xMax") - await chart_number(page, "xMin")
        assert 55 < span < 120, span  # the minute it has, not a wall-clock hour
        title = await page.text_content("#chart-title")
        assert title is not None
        assert title.startswith("Last hour · since ")  # less than an hour of it
        watched.assert_clean(site)


async def test_hovering_the_chart_shows_every_series_value(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    async with serving(web_settings(one_broker)) as site:
        past_readings(site.state, 600, amps=10.0, watts=0.0)  # a steady -300 W
        watched = await open_chart(browser, site, 600)
        page = watched.page
        over = await page.locator("#chart .u-over").bounding_box()
        assert over is not None
        await page.mouse.move(over["x"] + over["width"] * 0.5, over["y"] + over["height"] * 0.5)
        legend = page.locator("#chart .u-legend")
        await page.wait_for_function(
            "() => document.querySelector('#chart .u-legend').innerText.includes('A')",
            timeout=WAIT_MS,
        )
        text = await legend.inner_text()
        values = [line for line in text.split("\n") if line.strip()]
        assert any("Meter" in line for line in values), text
        readout = " ".join(values)
        assert readout.count("\u2212300 W") == 2, readout  # the meter and the value sent
        assert "10.0 A" in readout, readout
        await page.screenshot(path=ARTIFACTS / "status-page-light.png", full_page=True)
        watched.assert_clean(site)


async def test_the_wheel_zooms_and_a_shift_drag_pans_the_chart(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    async with serving(web_settings(one_broker)) as site:
        past_readings(site.state, 1200)
        watched = await open_chart(browser, site, 1200)
        page = watched.page
        span = (
            "(() => { const d = document.getElementById('chart').dataset;"
            " return Number(d.xMax) - Number(d.xMin); })()"
        )
        whole = await page.evaluate(span)
        over = await page.locator("#chart .u-over").bounding_box()
        assert over is not None
        middle = (over["x"] + over["width"] / 2, over["y"] + over["height"] / 2)
        await page.mouse.move(*middle)
        for _ in range(3):
            await page.mouse.wheel(0, -100)
        await page.wait_for_function(f"{span} < {whole} * 0.5", timeout=WAIT_MS)
        zoomed = await page.evaluate(span)
        x_min = await chart_number(page, "xMin")
        await page.keyboard.down("Shift")
        await page.mouse.down()
        await page.mouse.move(middle[0] + over["width"] / 4, middle[1], steps=5)
        await page.mouse.up()
        await page.keyboard.up("Shift")
        await page.wait_for_function(
            dataset("xMin") + f" < {x_min} - {zoomed} / 10", timeout=WAIT_MS
        )
        assert await page.evaluate(span) == pytest.approx(zoomed, rel=0.01)
        for _ in range(10):  # out past all there is: the chosen range again
            await page.mouse.wheel(0, 100)
        await page.wait_for_function(f"{span} >= {whole} - 2", timeout=WAIT_MS)
        watched.assert_clean(site)


async def test_the_range_buttons_change_what_the_chart_spans(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    async with serving(web_settings(one_broker)) as site:
        state = site.state
        now = past_readings(state, 1200)  # twenty minutes at 1 s
        epoch = state.snapshot()["now"] - now
        midnight = local_midnight(now + epoch) - epoch
        # and the day store, a row a minute, from three hours ago (or midnight)
        day_from = max(midnight, now - 3 * 3600)
        for minute in range(math.ceil((now - 1200 - day_from) / 60)):
            state.day.add_meter(day_from + 60 * minute, 500.0)
        watched = await open_chart(browser, site, 1200, color_scheme="dark")
        page = watched.page
        for name in ("quarter", "today", "hour"):
            await page.click(f"[data-range={name}]")
            wanted = "today" if name == "today" else None
            await page.wait_for_function(
                f"() => {{ const d = document.getElementById('chart').dataset;"
                f" return d.range === '{name}'"
                + (" && Number(d.dayRows) > 0" if wanted else "")
                + "; }",
                timeout=WAIT_MS,
            )
            x_min = await chart_number(page, "xMin") - epoch
            x_max = await chart_number(page, "xMax") - epoch
            # the quarter ends at the page's clock, seconds past `now` on a busy machine;
            # the hour starts at the first reading, today at its first minute's row
            first = {"quarter": x_max - 900, "hour": now - 1200, "today": day_from}[name]
            slack = 61 if name == "today" else 2
            assert abs(x_min - first) < slack, (name, x_min - first)
            assert x_max - now > -1, name
            assert await page.get_attribute(f"[data-range={name}]", "aria-pressed") == "true"
        await page.click("[data-range=today]")
        await page.wait_for_function(dataset("range") + " === 'today'", timeout=WAIT_MS)
        await page.screenshot(path=ARTIFACTS / "status-page-dark.png", full_page=True)
        watched.assert_clean(site)


async def test_a_stale_period_and_the_pause_claim_are_shaded(
    one_broker: BrokerProcess, browser: Browser
) -> None:
    settings = web_settings(one_broker, publish={"stale_after": 1.0, "pair_window": 0.1})
    async with serving(settings) as site:
        await site.send(DELIVERED, "0.400", "400")
        watched = await open_page(browser, site, viewport={"width": 1280, "height": 900})
        page = watched.page
        # the readings stop: stale, and the charger (its mode unknown) paused
        await page.wait_for_selector("#pause[data-claimed=true]", timeout=WAIT_MS)
        assert (await page.inner_text("#pause")).startswith("active since ")
        await page.wait_for_function(
            "() => { const d = document.getElementById('chart').dataset;"
            " return Number(d.staleBands) >= 1 && Number(d.pauseBands) >= 1; }",
            timeout=WAIT_MS,
        )
        await site.send(DELIVERED, "0.500", "500")  # fresh again: the claim is released
        await page.wait_for_selector("#pause[data-claimed=false]", timeout=WAIT_MS)
        assert await chart_number(page, "pauseBands") >= 1  # the period stays shaded
        await page.screenshot(path=ARTIFACTS / "status-page-paused.png", full_page=True)
        watched.assert_clean(site)
