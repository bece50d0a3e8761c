"""A figure as a PNG or an SVG, drawn by matplotlib (the `plot` extra; this module is
imported only to write one): kW on the left with round steps, the pilot's A on the
right with 0 A level with 0 kW, the hours of the day's own clock below, the outage
shaded and labelled, the car's charge starts marked along the top, the legend under
the plot. Each line is downsampled to the axes' width in pixels (downsample.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure as Canvas
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator
from matplotlib.transforms import blended_transform_factory

from p1evse.sim.downsample import extremes
from p1evse.sim.figure import CAR, Figure, Line

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 6.4, 110
COLUMNS = 1200  # about the axes' width in pixels at DPI
AREA_COLUMNS = 400
AREA_ALPHA = 0.22
LEGEND_CHARS = 140  # characters of the legend's font across the figure
SHADE = "#9ca3af"
DASHES: dict[str, Any] = {"solid": "solid", "dashed": (0, (4, 2)), "dotted": (0, (1, 1.5))}
STYLE: dict[Any, Any] = {
    "svg.fonttype": "none",  # text as text: smaller, and it can be searched
    "svg.hashsalt": "p1evse",  # the same day gives the same file
    "font.size": 10,
    "axes.spines.top": False,
    "axes.titlesize": 10,
    "axes.titlelocation": "left",
}


def write_image(figure: Figure, path: Path) -> None:
    """`figure` as `path`, PNG or SVG by its suffix."""
    with matplotlib.rc_context(STYLE):
        canvas = Canvas(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
        power = canvas.add_subplot()
        pilot = power.twinx()
        hours = [(figure.clock_s + at) / 3600 for at in figure.t]
        legend = [
            _draw(power if line.axis == "kW" else pilot, hours, line) for line in figure.lines
        ]
        legend += _shade(power, figure)
        legend += _starts(power, figure)
        _power_axis(power, figure)
        _pilot_axis(pilot, power, figure)
        _time_axis(power, hours)
        canvas.suptitle(figure.title, x=0.01, ha="left", fontsize=13, fontweight="bold")
        power.set_title(figure.subtitle)
        canvas.legend(
            [handle for handle, _ in legend],
            [label for _, label in legend],
            loc="outside lower center",
            ncol=_legend_columns([label for _, label in legend]),
            frameon=False,
            handlelength=2.6,
        )
        metadata = {"Date": None} if path.suffix.lower() == ".svg" else None
        canvas.savefig(path, metadata=metadata)


def _draw(axes: Axes, hours: list[float], line: Line) -> tuple[Any, str]:
    """`line` on `axes`, and its legend entry. A step is drawn as steps while it has a
    point a column or fewer; thinned to a few points a column, a line drawn through
    them is the same picture with half the points."""
    x, y = _thinned(hours, line.values, COLUMNS)
    stepped = line.style == "step" and len(x) == len(hours)
    if line.style == "area":
        # the area under its edge line, at a third of the detail (a file's size)
        _area(axes, *_thinned(hours, line.values, AREA_COLUMNS), line.colour)
    (drawn,) = axes.plot(
        x,
        y,
        color=line.colour,
        linewidth=line.width,
        linestyle=DASHES[line.dash],
        drawstyle="steps-post" if stepped else "default",
    )
    label = line.label if line.axis == "kW" else f"{line.label} (A, right)"
    if line.style == "area":
        return (Patch(color=line.colour, alpha=AREA_ALPHA), drawn), label
    return drawn, label


def _area(axes: Axes, x: list[float], y: list[float], colour: str) -> None:
    """Filled down to 0: each stretch without a gap as one polygon, its top edge and
    two corners (fill_between's polygons hold the baseline's every point too)."""
    start = 0
    for end in [*(i for i, v in enumerate(y) if math.isnan(v)), len(y)]:
        if end - start > 1:
            edge_x, edge_y = x[start:end], y[start:end]
            axes.fill(
                [*edge_x, edge_x[-1], edge_x[0]],
                [*edge_y, 0.0, 0.0],
                color=colour,
                alpha=AREA_ALPHA,
                linewidth=0,
            )
        start = end + 1


def _thinned(
    hours: list[float], values: list[float | None], columns: int
) -> tuple[list[float], list[float]]:
    kept = extremes(hours, values, columns)
    return [hours[i] for i in kept], [math.nan if (v := values[i]) is None else v for i in kept]


def _shade(axes: Axes, figure: Figure) -> list[tuple[Any, str]]:
    to_axes = blended_transform_factory(axes.transData, axes.transAxes)
    for span in figure.shaded:
        start, end = ((figure.clock_s + at) / 3600 for at in (span.start, span.end))
        axes.axvspan(start, end, color=SHADE, alpha=0.25, linewidth=0, zorder=0)
        axes.text(
            (start + end) / 2,
            0.93,
            span.label,
            transform=to_axes,
            ha="center",
            va="top",
            fontsize=9,
            color="#374151",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    if not figure.shaded:
        return []
    return [(Patch(color=SHADE, alpha=0.25), "meter silent (--outage)")]


def _starts(axes: Axes, figure: Figure) -> list[tuple[Any, str]]:
    if not figure.starts:
        return []
    to_axes = blended_transform_factory(axes.transData, axes.transAxes)
    at = [(figure.clock_s + t) / 3600 for t in figure.starts]
    axes.plot(
        at,
        [0.985] * len(at),
        transform=to_axes,
        linestyle="none",
        marker="v",
        markersize=7,
        color=CAR,
        clip_on=False,
    )
    marker = Line2D([], [], linestyle="none", marker="v", color=CAR)
    return [(marker, f"charge start ({len(at)})")]


def _legend_columns(labels: list[str]) -> int:
    """As many columns as fit the figure's width, in as few rows as that allows."""
    fit = max(1, LEGEND_CHARS // (max(map(len, labels)) + 6))
    rows = math.ceil(len(labels) / fit)
    return math.ceil(len(labels) / rows)


def _power_axis(axes: Axes, figure: Figure) -> None:
    low, high = _range(figure, "kW")
    axes.set_ylim(min(low, 0.0) * 1.08, max(high, 0.5) * 1.1)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
    axes.set_ylabel("power (kW)")
    axes.grid(axis="y", color="#e5e7eb", linewidth=0.8)
    axes.grid(axis="x", color="#f3f4f6", linewidth=0.8)
    axes.axhline(0, color="#9ca3af", linewidth=0.8, zorder=1)
    axes.set_axisbelow(True)


def _pilot_axis(pilot: Axes, power: Axes, figure: Figure) -> None:
    """0 A level with 0 kW; the highest pilot a little under the top."""
    if not any(line.axis == "A" for line in figure.lines):
        pilot.set_axis_off()
        power.spines["right"].set_visible(False)
        return
    low, high = power.get_ylim()
    top = max(_range(figure, "A")[1], 6.0) * 1.15
    pilot.set_ylim(low / high * top, top)
    ticks = MaxNLocator(nbins=5, steps=[1, 2, 4, 5, 10], integer=True).tick_values(0, top)
    pilot.set_yticks([a for a in ticks if 0 <= a <= top])
    pilot.set_ylabel("pilot (A)")
    pilot.spines["top"].set_visible(False)


def _time_axis(axes: Axes, hours: list[float]) -> None:
    span = hours[-1] - hours[0]
    step = next((h for h in (0.25, 0.5, 1, 2, 3) if span / h <= 16), 6)
    axes.xaxis.set_major_locator(MultipleLocator(step))
    axes.xaxis.set_major_formatter(FuncFormatter(_clock))
    axes.set_xlim(hours[0], hours[-1])


def _clock(hours: float, _: object) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def _range(figure: Figure, axis: str) -> tuple[float, float]:
    values = [v for line in figure.lines if line.axis == axis for v in line.values if v is not None]
    return (min(values), max(values)) if values else (0.0, 1.0)
