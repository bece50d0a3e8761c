"""A figure as one self-contained HTML page drawn by uPlot: the library's script and
style inlined from the package (p1evse.web.assets), the series as JSON, our drawing
code (plot_page.js). Drag to zoom, double-click to go back, the legend reads every
series at the cursor and hides one on a click; dark when the system is. Each series is
downsampled on its own (downsample.py) at a resolution that still holds when zoomed."""

from __future__ import annotations

import json
from datetime import UTC
from html import escape
from pathlib import Path
from typing import Any

from p1evse.sim.downsample import extremes
from p1evse.sim.figure import CAR, Figure, Line
from p1evse.web.assets import CHART_NAV, UPLOT_DIR, UPLOT_SCRIPT, UPLOT_STYLE

COLUMNS = 3000  # pixel columns of detail: a day at 1 s keeps a point every ~30 s or less
SCRIPT = Path(__file__).with_name("plot_page.js")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>@TITLE@</title>
<style>
@UPLOT_STYLE@
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #111827; background: #fff; }
h1 { font-size: 18px; margin: 0 0 2px; }
p { margin: 0 0 10px; color: #4b5563; }
.hint { font-size: 12px; margin-top: 8px; }
.u-legend { font-size: 13px; }
.u-legend .u-value { font-variant-numeric: tabular-nums; }
@media (prefers-color-scheme: dark) {
  body { color: #e5e7eb; background: #111827; }
  p { color: #9ca3af; }
}
</style>
</head>
<body>
<h1>@TITLE@</h1>
<p>@SUBTITLE@</p>
<div id="chart"></div>
<p class="hint">Drag across the chart or turn the wheel to zoom, Shift-drag to pan,
double-click to zoom out; click a name in the legend to hide or show it. Times are the
day's own clock.</p>
<script id="plot-data" type="application/json">@DATA@</script>
<script>
/* uPlot, MIT licence:
@UPLOT_LICENCE@
*/
@UPLOT_SCRIPT@
</script>
<script>
@NAV@
</script>
<script>
@SCRIPT@
</script>
</body>
</html>
"""


def write_page(figure: Figure, path: Path) -> None:
    """`figure` as an HTML page at `path`."""
    parts = {
        "@TITLE@": escape(figure.title),
        "@SUBTITLE@": escape(figure.subtitle),
        "@UPLOT_STYLE@": UPLOT_STYLE.read_text(encoding="utf-8"),
        "@DATA@": _json(figure),
        "@UPLOT_LICENCE@": (UPLOT_DIR / "LICENSE").read_text(encoding="utf-8").replace("*/", ""),
        "@UPLOT_SCRIPT@": UPLOT_SCRIPT.read_text(encoding="utf-8"),
        "@NAV@": CHART_NAV.read_text(encoding="utf-8"),
        "@SCRIPT@": SCRIPT.read_text(encoding="utf-8"),
    }
    page = PAGE
    for marker, text in parts.items():
        page = page.replace(marker, text)
    path.write_text(page, encoding="utf-8")


def _json(figure: Figure) -> str:
    """The figure's data, safe inside a <script> element."""
    data = {
        # the day's wall clock as if it were UTC, so the page shows it whatever its zone
        "x0": figure.origin.replace(tzinfo=UTC).timestamp(),
        "series": [_series(figure.t, line) for line in figure.lines],
        "shaded": [
            {"start": span.start, "end": span.end, "label": span.label} for span in figure.shaded
        ],
        "starts": figure.starts,
        "starts_colour": CAR,
    }
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _series(t: list[float], line: Line) -> dict[str, Any]:
    kept = extremes(t, line.values, COLUMNS)
    return {
        "label": line.label,
        "colour": line.colour,
        "style": line.style,
        "axis": line.axis,
        "width": line.width,
        "dash": line.dash,
        "dt": _deltas([round(t[i] * 10) for i in kept]),
        "v": [_number(line.values[i]) for i in kept],
    }


def _deltas(tenths: list[int]) -> list[int]:
    """Times as the steps between them, in tenths of a second: short in JSON, exact."""
    return [b - a for a, b in zip([0, *tenths], tenths, strict=False)]


def _number(value: float | None) -> float | int | None:
    """Short in JSON: `2` for 2.0, three decimals of kW (whole watts)."""
    if value is None:
        return None
    rounded = round(value, 3)
    return int(rounded) if rounded.is_integer() else rounded
