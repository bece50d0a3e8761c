"""What a plot of `simulate` shows, whatever draws it (matplotlib's PNG and SVG, uPlot's
page): the series at full resolution in kW (the pilot in A), in the order they are
drawn, the outage shaded, the car's charge starts, and a title with the day's figures.
The drawers downsample for display; nothing here is computed from fewer samples."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from p1evse.sim.simulate import Result, TracePoint

# area: filled to 0 under a thin edge; line; step: held until the next value
Style = Literal["area", "line", "step"]
Axis = Literal["kW", "A"]
Dash = Literal["solid", "dashed", "dotted"]

PV = "#e69f00"
HOUSE = "#6b7280"
CAR = "#1d4ed8"
GRID = "#f05252"
SENT = "#064e3b"
PILOT = "#7c3aed"
# the runs of a comparison, each its own colour (a colour-blind-safe set), then dashed
RUN_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9", "#000000", "#b8860b")


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    colour: str
    values: list[float | None]  # at the figure's `t`: kW, or A on the "A" axis; None: a gap
    style: Style = "line"
    axis: Axis = "kW"
    width: float = 1.2
    dash: Dash = "solid"


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of the day to shade, from `start` to `end` (s since the origin)."""

    start: float
    end: float
    label: str


@dataclass(frozen=True, slots=True)
class Figure:
    title: str
    subtitle: str
    origin: datetime  # the wall clock (local, naive) at t = 0
    t: list[float]  # s since the origin, rising
    lines: list[Line]  # in drawing order: the first is drawn first, underneath
    shaded: list[Span]
    starts: list[float]  # the car's charge starts, s since the origin, marked in CAR

    @property
    def clock_s(self) -> float:
        """The time of day at t = 0, s: hours on the axis come from the day's own clock."""
        origin = self.origin
        return origin.hour * 3600 + origin.minute * 60 + origin.second + origin.microsecond / 1e6


def day_figure(result: Result, title: str, origin: datetime, outage: Span | None) -> Figure:
    """One run's day: PV and the grid as areas, the house and the car as lines, what
    p1evse sent as a dashed step on top of the grid, the pilot on its own axis."""
    trace = _traced(result)
    t = [row.t for row in trace]
    lines = [
        Line("PV", PV, _kw(row.pv_w for row in trace), "area"),
        Line("grid (+ import)", GRID, _kw(row.grid_w for row in trace), "area", width=1.8),
        Line("house", HOUSE, _kw(row.house_w for row in trace), width=1.0),
        Line("car", CAR, _kw(row.car_w for row in trace), width=1.6),
        Line(
            "sent to OpenEVSE",
            SENT,
            _kw(held(t, [row.published_w for row in trace])),
            "step",
            width=1.0,
            dash="dashed",
        ),
        Line("pilot", PILOT, [row.pilot_a for row in trace], "step", "A", 1.2, "dotted"),
    ]
    shaded = [outage] if outage is not None else []
    return Figure(title, figures(result), origin, t, lines, shaded, result.start_times)


def compare_figure(
    results: dict[str, Result], title: str, origin: datetime, outage: Span | None
) -> Figure:
    """Every run's car power, one line each, labelled by its setting and its energy to
    the car, over the day's PV and house (the same in every run: the first run's)."""
    first = _traced(next(iter(results.values())))
    t = [row.t for row in first]
    lines = [
        Line("PV", PV, _kw(row.pv_w for row in first), "area"),
        Line("house", HOUSE, _kw(row.house_w for row in first), width=1.0),
    ]
    last = max(len(results) - 1, 1)
    for number, (label, result) in enumerate(results.items()):
        colour = RUN_COLOURS[number % len(RUN_COLOURS)]
        dash: Dash = "dashed" if number >= len(RUN_COLOURS) else "solid"
        car = _kw(row.car_w for row in _traced(result))
        name = f"{label}: {result.ev_kwh:.1f} kWh ({result.ev_solar_kwh:.1f} solar)"
        # each drawn a little narrower than the one before: where runs agree, every
        # one of them still shows, as stripes along the widest
        width = 1.0 + 2.4 * (last - number) / last
        lines.append(Line(name, colour, car, width=width, dash=dash))
    run = next(iter(results.values()))
    subtitle = (
        f"PV {run.pv_kwh:.1f} kWh · house {run.house_kwh:.1f} kWh · "
        f"the car's power with each of {len(results)} settings"
    )
    shaded = [outage] if outage is not None else []
    return Figure(title, subtitle, origin, t, lines, shaded, [])


def figures(result: Result) -> str:
    """The day's figures in one line, for a title."""
    starts = result.charge_starts
    return (
        f"PV {result.pv_kwh:.1f} kWh · car {result.ev_kwh:.1f} kWh "
        f"({result.ev_solar_kwh:.1f} solar) · import while charging "
        f"{result.grid_import_while_charging_kwh:.1f} kWh · "
        f"{starts} start{'' if starts == 1 else 's'}"
    )


def outage_span(start_s: float, duration_s: float) -> Span:
    """An outage's shading: `start_s` since the origin."""
    return Span(start_s, start_s + duration_s, f"meter silent {_duration(duration_s)}")


def held(t: Sequence[float], sent: Sequence[float | None]) -> list[float | None]:
    """The value last sent, at each step: what the charger holds. A gap (None) where
    nothing was sent for longer than three of the usual periods between sends."""
    times = [at for at, value in zip(t, sent, strict=True) if value is not None]
    if len(times) < 2:
        return [*sent]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    hold_s = 3 * statistics.median(gaps)
    out: list[float | None] = []
    last: float | None = None
    last_at = 0.0
    for at, value in zip(t, sent, strict=True):
        if value is not None:
            last, last_at = value, at
        elif last is not None and at - last_at > hold_s:
            last = None
        out.append(last)
    return out


def _traced(result: Result) -> list[TracePoint]:
    if not result.trace:
        raise ValueError("a plot needs a run with its trace kept")
    return result.trace


def _kw(watts: Iterable[float | None]) -> list[float | None]:
    return [None if w is None else w / 1000 for w in watts]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
