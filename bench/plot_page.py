"""Plot benchmark: the files `simulate --plot` writes for a whole day at a 1 s step
(86,400 steps, the synthetic day from midnight to midnight), and how long Debian's
Chromium takes to draw the page.

It prints the size of each file (SVG, PNG, HTML), the time to write each, and for the
page the time from the start of navigation to uPlot's first drawn chart (the page's own
`performance.now()` in its first draw hook, so it counts loading, parsing the inlined
library and data, aligning the series and drawing), for each of a few fresh pages.

    uv run python bench/plot_page.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from p1evse.pipeline import PublishSettings
from p1evse.sim.figure import Figure, day_figure, outage_span
from p1evse.sim.house import SyntheticDay
from p1evse.sim.openevse import DivertSettings
from p1evse.sim.plot_image import write_image
from p1evse.sim.plot_page import write_page
from p1evse.sim.simulate import simulate

CHROMIUM = "/usr/bin/chromium"
PAGES = 5
TIMEOUT_MS = 60_000


def day_at_1_s() -> Figure:
    day = SyntheticDay(seed=1, first_s=0.0, last_s=86_399.0)
    result = simulate(day, PublishSettings(), DivertSettings(), 1.0, trace=True)
    return day_figure(result, "a day at 1 s", day.origin, outage_span(43_200, 1800))


async def draw_times(page_file: Path) -> list[float]:
    """ms from navigation to the first drawn chart, for each of PAGES fresh pages."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        times = []
        for _ in range(PAGES):
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(page_file.as_uri())
            await page.wait_for_selector("body[data-drawn]", timeout=TIMEOUT_MS)
            times.append(float(await page.evaluate("document.body.dataset.drawn")))
            await page.close()
        await browser.close()
    return times


def main() -> None:
    started = time.perf_counter()
    figure = day_at_1_s()
    print(f"simulated {len(figure.t)} steps in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        for name, write in (("day.svg", write_image), ("day.png", write_image)):
            path = Path(folder) / name
            started = time.perf_counter()
            write(figure, path)
            took = time.perf_counter() - started
            print(f"{name:9} {path.stat().st_size / 1000:7.0f} kB  written in {took:.2f} s")
        page = Path(folder) / "day.html"
        started = time.perf_counter()
        write_page(figure, page)
        took = time.perf_counter() - started
        print(f"{page.name:9} {page.stat().st_size / 1000:7.0f} kB  written in {took:.2f} s")
        times = asyncio.run(draw_times(page))
    shown = ", ".join(f"{ms:.0f}" for ms in times)
    print(
        f"Chromium, navigation to the chart drawn: median {statistics.median(times):.0f} ms "
        f"({shown} ms)"
    )


if __name__ == "__main__":
    main()
