"""A simulated day as an SVG: power (W, left axis) of PV, house, car, grid and the value
p1evse published, and the charger's pilot (A, right axis) as its state; one tick an
hour. SVG, not PNG: drawing one picture is not worth an imaging library."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from p1evse.sim.simulate import Result

WIDTH, HEIGHT, MARGIN = 1200.0, 480.0, 56.0
POWER_SERIES = [
    ("pv_w", "PV", "#e3a008"),
    ("house_w", "house", "#6b7280"),
    ("car_w", "car", "#2563eb"),
    ("grid_w", "grid (+ import)", "#dc2626"),
    ("published_w", "published", "#059669"),
]
PILOT_COLOUR = "#7c3aed"


PLOT_SUFFIXES = (".svg", ".html")


def svg_plot(result: Result, path: Path, title: str = "", clock_s: float = 0.0) -> None:
    """An SVG file, or an HTML page holding it when `path` ends in .html; `clock_s` is
    the time of day (s) at the trace's t = 0, for the hour ticks."""
    rows = result.trace
    if not rows:
        raise ValueError("nothing to plot")
    t0, t_end = rows[0].t, rows[-1].t
    span = max(t_end - t0, 1.0)
    values: list[float] = [
        v
        for row in rows
        for name, _, _ in POWER_SERIES
        if (v := getattr(row, name)) is not None and math.isfinite(v)
    ]
    low, high = min(min(values), 0.0), max(max(values), 1.0)
    amps_high = max(max(row.pilot_a for row in rows), 1.0)
    plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN

    def x(t: float) -> float:
        return MARGIN + plot_w * (t - t0) / span

    def y(watts: float) -> float:
        return HEIGHT - MARGIN - plot_h * (watts - low) / (high - low)

    def y_amps(amps: float) -> float:
        """0 A on the 0 W line, the highest pilot at the top."""
        return y(0) - (y(0) - MARGIN) * amps / amps_high

    parts = [
        f'<rect width="{WIDTH:.0f}" height="{HEIGHT:.0f}" fill="#fff"/>',
        f'<text x="{MARGIN}" y="18" font-size="14">{escape(title)}</text>',
        f'<line x1="{MARGIN}" x2="{WIDTH - MARGIN}" y1="{y(0):.1f}" y2="{y(0):.1f}" '
        'stroke="#999"/>',
    ]
    first_hour = math.ceil((clock_s + t0) / 3600)
    for hour in range(first_hour, math.floor((clock_s + t_end) / 3600) + 1):
        at = x(hour * 3600 - clock_s)
        parts.append(
            f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{MARGIN}" y2="{HEIGHT - MARGIN}" '
            f'stroke="#eee"/><text x="{at:.1f}" y="{HEIGHT - MARGIN + 16}" font-size="11" '
            f'text-anchor="middle">{hour % 24:02d}h</text>'
        )
    for watts in (low, 0.0, high):
        parts.append(
            f'<text x="{MARGIN - 4}" y="{y(watts) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{watts:.0f} W</text>'
        )
    parts.append(
        f'<text x="{WIDTH - MARGIN + 4}" y="{y_amps(amps_high) + 4:.1f}" font-size="11" '
        f'fill="{PILOT_COLOUR}">{amps_high:g} A</text>'
    )
    for name, _, colour in POWER_SERIES:
        points = " ".join(
            f"{x(row.t):.1f},{y(value):.1f}"
            for row in rows
            if (value := getattr(row, name)) is not None and math.isfinite(value)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{points}"/>'
        )
    pilot = " ".join(f"{x(row.t):.1f},{y_amps(row.pilot_a):.1f}" for row in rows)
    parts.append(
        f'<polyline fill="none" stroke="{PILOT_COLOUR}" stroke-width="1" '
        f'stroke-dasharray="4 2" points="{pilot}"/>'
    )
    legend = [*((name, colour) for _, name, colour in POWER_SERIES), ("pilot (A)", PILOT_COLOUR)]
    parts += [
        f'<text x="{MARGIN + i * 125}" y="38" fill="{colour}" font-size="13">{name}</text>'
        for i, (name, colour) in enumerate(legend)
    ]
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0f}" height="{HEIGHT:.0f}" '
        f'font-family="sans-serif">{"".join(parts)}</svg>\n'
    )
    if path.suffix.lower() == ".html":
        svg = (
            f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"</head><body>{svg}</body></html>\n"
        )
    path.write_text(svg, encoding="utf-8")
