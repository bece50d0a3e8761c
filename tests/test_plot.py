"""`simulate --plot`: a day as PNG and SVG (matplotlib, the extra `plot`) or as a page
(uPlot, inlined), small files for a day at 1 s, the downsampler they rest on, the
missing extra, and the page in a real browser (tests/browsers.py)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser

from p1evse.pipeline import PublishSettings
from p1evse.sim.figure import day_figure, figures, held, outage_span
from p1evse.sim.house import SyntheticDay
from p1evse.sim.openevse import DivertSettings
from p1evse.sim.plot_image import write_image
from p1evse.sim.plot_page import write_page
from p1evse.sim.simulate import simulate
from p1evse.web.assets import UPLOT_SCRIPT
from tests.browsers import ARTIFACTS
from tests.conftest import HEAVY_TIMEOUT_S

WAIT_MS = 15_000
SVG = "{http://www.w3.org/2000/svg}"


def recorded_day(tmp_path: Path) -> Path:
    """A day as OpenEVSE's divert simulator writes it, 07:00 to 19:00 a minute apart: a
    clear-sky sun with a cloudy hour, a house of 250 W with a kettle now and then."""
    lines = ['"Date-time string", "solar:solar", "grid:Grid import export RAW"']
    start = datetime(2018, 6, 10, 7, 0)
    for minute in range(12 * 60 + 1):
        sun = 4500 * math.sin(math.pi * minute / (12 * 60))
        solar = sun * (0.3 if 240 <= minute < 300 else 1.0)
        house = 250 + (2000 if minute % 97 < 3 else 0)
        lines.append(f"{start + timedelta(minutes=minute)}, {solar:.0f}, {house - solar:.0f}")
    path = tmp_path / "day.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def simulate_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p1evse", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def page_data(page: str) -> dict[str, object]:
    found = re.search(r'<script id="plot-data" type="application/json">(.*?)</script>', page)
    assert found is not None
    data: dict[str, object] = json.loads(found[1])
    return data


@pytest.mark.timeout(HEAVY_TIMEOUT_S)
def test_a_recorded_day_as_png_svg_and_html(tmp_path: Path) -> None:
    day = recorded_day(tmp_path)
    outage = ("--outage", "18000+1800")  # 12:00 to 12:30 on the day's clock
    for suffix in ("png", "svg", "html"):
        plot = tmp_path / f"day.{suffix}"
        result = simulate_cli("--csv", str(day), "--step", "5", *outage, "--plot", str(plot))
        assert result.returncode == 0, result.stderr
    png = (tmp_path / "day.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "day.png", ARTIFACTS / "simulate-plot-matplotlib.png")

    svg = ET.parse(tmp_path / "day.svg").getroot()
    texts = {"".join(text.itertext()).strip() for text in svg.iter(f"{SVG}text")}
    assert "day.csv, 10 Jun 2018" in texts
    assert any(text.startswith("PV ") and "starts" in text for text in texts)  # the figures
    assert {"07:00", "12:00", "19:00"} <= texts  # the day's own clock
    assert {"power (kW)", "pilot (A)", "meter silent 30 min"} <= texts
    assert {"grid (+ import)", "sent to OpenEVSE", "charge start (1)"} & texts

    page = (tmp_path / "day.html").read_text()
    assert page.startswith("<!doctype html>")
    assert UPLOT_SCRIPT.read_text() in page  # inlined: the file is all it needs
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)
    data = page_data(page)
    labels = [series["label"] for series in data["series"]]  # type: ignore[attr-defined]
    assert labels == ["PV", "grid (+ import)", "house", "car", "sent to OpenEVSE", "pilot"]
    # s since the day's origin, its first sample
    assert data["shaded"] == [{"start": 18000.0, "end": 19800.0, "label": "meter silent 30 min"}]


@pytest.mark.timeout(HEAVY_TIMEOUT_S)
def test_a_day_at_1_s_makes_small_files_from_every_sample(tmp_path: Path) -> None:
    """86,400 steps: the figures come from all of them, the picture from a few points a
    pixel column."""
    day = SyntheticDay(seed=4, first_s=0.0, last_s=86_399.0)
    result = simulate(day, PublishSettings(), DivertSettings(), 1.0, trace=True)
    assert len(result.trace) == 86_400
    figure = day_figure(result, "a day at 1 s", day.origin, outage_span(43_200, 1800))
    assert figure.subtitle == figures(result)
    write_image(figure, tmp_path / "day.svg")
    write_page(figure, tmp_path / "day.html")
    assert (tmp_path / "day.svg").stat().st_size <= 300_000
    assert (tmp_path / "day.html").stat().st_size <= 1_000_000
    series = page_data((tmp_path / "day.html").read_text())["series"]
    assert sum(len(one["v"]) for one in series) < 6 * 86_400 / 4  # type: ignore[attr-defined]


def test_the_value_sent_is_held_until_the_next_and_gaps_when_sending_stops() -> None:
    t = [float(s) for s in range(40)]
    sent: list[float | None] = [None] * 40
    for s in (0, 5, 10, 15, 35):
        sent[s] = float(s)
    shown = held(t, sent)
    assert shown[4] == 0.0
    assert shown[12] == 10.0
    assert shown[30] == 15.0  # 15 s since the last: 3 periods, still held
    assert shown[31] is None  # longer: nothing was sent
    assert shown[36] == 35.0


# -- the extra ------------------------------------------------------------------------------


def test_without_matplotlib_png_and_svg_say_what_to_install_and_html_works(
    tmp_path: Path,
) -> None:
    """matplotlib blocked in a fresh interpreter (a sitecustomize that sets it to None in
    sys.modules, as if it were not installed): the real import path of `--plot`."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")
    env = {"PYTHONPATH": str(shim), "PATH": "/usr/bin:/bin"}
    for suffix in ("png", "svg"):
        plot = tmp_path / f"day.{suffix}"
        result = simulate_cli("--synthetic", "--plot", str(plot), env=env)
        assert (result.returncode, result.stdout) == (2, "")
        [line] = result.stderr.splitlines()
        assert f"{suffix.upper()} is drawn by matplotlib, which is not installed" in line
        assert "pip install 'p1evse[plot]'" in line
        assert "uv run --extra plot" in line
        assert not plot.exists()
    page = tmp_path / "day.html"
    result = simulate_cli("--synthetic", "--step", "10", "--plot", str(page), env=env)
    assert result.returncode == 0, result.stderr
    assert page.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("day.pdf", "expected a file name ending in .png, .svg, .html"),
        ("day", "expected a file name ending in .png, .svg, .html"),
        ("nowhere/day.svg", "no such directory"),
        ("a-directory.svg", "not a file (a directory?)"),
    ],
)
def test_a_plot_it_cannot_write_is_one_line_before_the_day_runs(
    tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "a-directory.svg").mkdir()
    result = simulate_cli("--synthetic", "--plot", str(tmp_path / name))
    assert (result.returncode, result.stdout) == (2, "")
    [line] = result.stderr.splitlines()
    assert message in line
    assert f"--plot '{tmp_path / name}'" in line


# -- the page in a browser ------------------------------------------------------------------

LEGEND_VALUES = "[...document.querySelectorAll('.u-legend .u-value')].map(e => e.textContent)"


@pytest.mark.timeout(HEAVY_TIMEOUT_S)
async def test_the_page_draws_the_day_reads_it_at_the_cursor_and_zooms(
    tmp_path: Path, browser: Browser
) -> None:
    plot = tmp_path / "day.html"
    result = simulate_cli(
        "--csv",
        str(recorded_day(tmp_path)),
        "--step",
        "5",
        "--outage",
        "18000+1800",
        "--plot",
        str(plot),
    )
    assert result.returncode == 0, result.stderr
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(plot.as_uri())
    await page.wait_for_selector("body[data-drawn]", timeout=WAIT_MS)
    canvas = await page.wait_for_selector("#chart canvas", timeout=WAIT_MS)
    assert canvas is not None
    box = await canvas.bounding_box()
    assert box is not None
    assert box["width"] > 1000

    await page.mouse.move(box["x"] + box["width"] * 0.65, box["y"] + box["height"] / 2)
    await page.wait_for_function(
        f"{LEGEND_VALUES}.every(text => text !== '\\u2013' && text !== '--')", timeout=WAIT_MS
    )
    readout = await page.evaluate(LEGEND_VALUES)
    assert re.fullmatch(r"2018-06-10 1[3-6]:\d\d:\d\d", readout[0]), readout  # its own clock
    assert all(text.endswith(" kW") for text in readout[1:6]), readout
    assert readout[6].endswith(" A")
    await page.screenshot(path=ARTIFACTS / "simulate-plot.png", full_page=True)

    # a drag zooms in on the time axis; a click on a legend entry hides its series
    span = "(() => { const x = window.p1evsePlot.scales.x; return x.max - x.min; })()"
    day_s = await page.evaluate(span)
    await page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + 100)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 100, steps=5)
    await page.mouse.up()
    await page.wait_for_function(f"{span} < {day_s} / 5", timeout=WAIT_MS)
    # Shift-drag pans: the same span, earlier; the wheel zooms out, past the day: all of it
    x_min = "window.p1evsePlot.scales.x.min"
    before = await page.evaluate(x_min)
    zoomed = await page.evaluate(span)
    await page.keyboard.down("Shift")
    await page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + 100)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 100, steps=5)
    await page.mouse.up()
    await page.keyboard.up("Shift")
    await page.wait_for_function(f"{x_min} < {before} - {zoomed} / 10", timeout=WAIT_MS)
    assert await page.evaluate(span) == pytest.approx(zoomed)
    for _ in range(12):
        await page.mouse.wheel(0, 100)
    await page.wait_for_function(f"{span} >= {day_s} - 1", timeout=WAIT_MS)
    await page.click(".u-legend .u-series:nth-child(2) .u-label")
    await page.wait_for_function("window.p1evsePlot.series[1].show === false", timeout=WAIT_MS)
    assert errors == []
    await page.close()
