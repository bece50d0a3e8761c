"""Where the page's files are: the package's static directory and the charting library
vendored in it (see static/vendor/uplot/VENDORED.md). No I/O at import."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
UPLOT_DIR = STATIC_DIR / "vendor" / "uplot"
UPLOT_SCRIPT = UPLOT_DIR / "uPlot.iife.min.js"
UPLOT_STYLE = UPLOT_DIR / "uPlot.min.css"
CHART_NAV = STATIC_DIR / "chart-nav.js"  # zoom and pan, for the page and simulate's plot
