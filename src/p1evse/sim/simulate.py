"""`p1evse simulate`: a day of house, PV and car in virtual time, through the real
pipeline (rules, averaging, stale guard) and the OpenEVSE divert model.

Each step the meter reads the house's net power plus what the car draws; the pipeline
decides what to publish; OpenEVSE's divert reacts to each published value; the car
draws what the charger offers from the next step on.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from p1evse.config import PublishSettings
from p1evse.model import GridPower, Reading, StaleAction, StaleEntered, StaleLeft
from p1evse.pipeline import Pipeline
from p1evse.sim.meter import SunnyDay
from p1evse.sim.openevse import MQTT_PRIORITY, Claim, DivertSettings, OpenEvseModel


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds since the day's first sample
    solar_w: float
    house_net_w: float  # + import / - export, without the car


@dataclass(frozen=True, slots=True)
class Outage:
    start_s: float
    duration_s: float

    def covers(self, at: float) -> bool:
        return self.start_s <= at < self.start_s + self.duration_s


@dataclass
class Result:
    pv_kwh: float = 0.0
    house_kwh: float = 0.0
    ev_kwh: float = 0.0
    ev_solar_kwh: float = 0.0
    grid_import_while_charging_kwh: float = 0.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    charge_starts: int = 0
    charging_hours: float = 0.0
    trace: list[tuple[float, float, float, float, float, float | None]] = field(
        default_factory=list, repr=False
    )  # (t, pv W, house W, car W, grid W, published W)

    def summary(self) -> dict[str, Any]:
        return {
            "pv_kwh": round(self.pv_kwh, 3),
            "house_kwh": round(self.house_kwh, 3),
            "ev_kwh": round(self.ev_kwh, 3),
            "ev_solar_kwh": round(self.ev_solar_kwh, 3),
            "grid_import_while_charging_kwh": round(self.grid_import_while_charging_kwh, 3),
            "export_kwh": round(self.export_kwh, 3),
            "charge_starts": self.charge_starts,
            "charging_hours": round(self.charging_hours, 3),
        }


def read_csv(path: Path) -> list[Sample]:
    """OpenEVSE's divert-simulator day files: `time, solar_w[, grid_w]` with a header;
    time as `YYYY-MM-DD HH:MM:SS` or epoch seconds; grid_w is the house without the car
    (+ import). Without grid_w the house is taken to use nothing but what PV covers.
    Rows with `null` values are gaps, bridged by interpolation."""
    samples: list[Sample] = []
    with path.open(newline="", encoding="utf-8") as file:
        rows = csv.reader(file, skipinitialspace=True)
        next(rows, None)  # the header
        for number, row in enumerate(rows, 2):
            if not row or not row[0].strip() or "null" in row[1:]:
                continue  # a gap in the data: the neighbours are interpolated over it
            try:
                at = _seconds(row[0])
                solar = float(row[1])
                grid = float(row[2]) if len(row) > 2 and row[2].strip() else -solar
            except (ValueError, IndexError):
                raise ValueError(
                    f"{path} line {number}: expected time, solar_w[, grid_w]"
                ) from None
            samples.append(Sample(at, solar, grid))
    if len(samples) < 2:
        raise ValueError(f"{path}: needs at least two samples")
    start = samples[0].at
    return [replace(sample, at=sample.at - start) for sample in samples]


def _seconds(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").timestamp()


def synthetic_day(seed: int, step_s: float = 60.0) -> list[Sample]:
    day = SunnyDay(seed=seed)
    start, end = 6 * 3600.0, 21 * 3600.0
    count = int((end - start) / step_s) + 1
    return [
        Sample(i * step_s, day.pv_w(start + i * step_s), day.net_w(start + i * step_s))
        for i in range(count)
    ]


def sample_period(samples: Sequence[Sample]) -> float:
    gaps = sorted(b.at - a.at for a, b in itertools.pairwise(samples))
    return gaps[len(gaps) // 2]


def _interpolated(samples: Sequence[Sample], step_s: float) -> Iterator[Sample]:
    """Samples at every `step_s`, linear between the input's samples."""
    index = 0
    end = samples[-1].at
    for n in range(int(end / step_s) + 1):
        at = n * step_s
        while samples[index + 1].at < at and index + 2 < len(samples):
            index += 1
        a, b = samples[index], samples[index + 1]
        f = 0.0 if b.at == a.at else min(1.0, max(0.0, (at - a.at) / (b.at - a.at)))
        yield Sample(
            at,
            a.solar_w + f * (b.solar_w - a.solar_w),
            a.house_net_w + f * (b.house_net_w - a.house_net_w),
        )


def simulate(
    samples: Sequence[Sample],
    publish: PublishSettings,
    divert: DivertSettings,
    step_s: float,
    outage: Outage | None = None,
    trace: bool = False,
) -> Result:
    result = Result()
    pipeline = Pipeline(publish, now=0.0)
    charger = OpenEvseModel(divert)
    hours = step_s / 3600
    charging = False
    for sample in _interpolated(samples, step_s):
        t = sample.at
        car_w = charger.pilot_draw() * divert.voltage
        grid_w = sample.house_net_w + car_w
        house_w = sample.house_net_w + sample.solar_w
        events = pipeline.tick(t)
        if outage is None or not outage.covers(t):
            imp, exp = max(grid_w, 0.0), max(-grid_w, 0.0)
            events += pipeline.reading(Reading(t, imp, exp), t)
        published: float | None = None
        for event in events:
            if isinstance(event, GridPower):
                published = event.watts
                charger.grid_ie(event.watts, t)
            elif isinstance(event, StaleEntered) and event.action is StaleAction.PAUSE:
                charger.claim("mqtt", Claim(MQTT_PRIORITY, False))
            elif isinstance(event, StaleLeft):
                charger.claim("mqtt", None)
        # energy of this step, at the power the car drew during it
        result.pv_kwh += sample.solar_w * hours / 1000
        result.house_kwh += house_w * hours / 1000
        result.ev_kwh += car_w * hours / 1000
        surplus = max(0.0, sample.solar_w - house_w)
        result.ev_solar_kwh += min(car_w, surplus) * hours / 1000
        result.import_kwh += max(grid_w, 0.0) * hours / 1000
        result.export_kwh += max(-grid_w, 0.0) * hours / 1000
        if car_w > 0:
            result.grid_import_while_charging_kwh += max(grid_w, 0.0) * hours / 1000
            result.charging_hours += hours
            if not charging:
                result.charge_starts += 1
        charging = car_w > 0
        if trace:
            result.trace.append((t, sample.solar_w, house_w, car_w, grid_w, published))
    return result


def balance_error(result: Result) -> float:
    """house + car = PV + import - export, as a fraction of the energy that flowed."""
    used = result.house_kwh + result.ev_kwh
    supplied = result.pv_kwh + result.import_kwh - result.export_kwh
    return abs(used - supplied) / max(used, supplied, 1e-9)


def table(columns: dict[str, dict[str, Any]]) -> str:
    """One column per run, one row per figure."""
    names = list(columns)
    keys = list(next(iter(columns.values())))
    width = max(len(key) for key in keys)
    lines = [" " * width + "".join(f"  {name:>18}" for name in names)]
    for key in keys:
        cells = "".join(f"  {_cell(columns[name][key]):>18}" for name in names)
        lines.append(f"{key:<{width}}{cells}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def svg_plot(result: Result, path: Path) -> None:
    """The day as an SVG: PV, house, car and grid power, and what was published."""
    rows = result.trace
    if not rows:
        raise ValueError("nothing to plot")
    width, height, margin = 1200.0, 420.0, 40.0
    t_end = rows[-1][0] or 1.0
    values = [v for row in rows for v in row[1:] if v is not None]
    low, high = min(min(values), 0.0), max(max(values), 1.0)

    def x(t: float) -> float:
        return margin + (width - 2 * margin) * t / t_end

    def y(w: float) -> float:
        return height - margin - (height - 2 * margin) * (w - low) / (high - low)

    series = [
        (1, "PV", "#e3a008"),
        (2, "house", "#6b7280"),
        (3, "car", "#2563eb"),
        (4, "grid", "#dc2626"),
        (5, "published", "#059669"),
    ]
    lines = []
    for column, name, colour in series:
        points = " ".join(
            f"{x(row[0]):.1f},{y(value):.1f}"
            for row in rows
            if (value := row[column]) is not None and math.isfinite(value)
        )
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{points}">'
            f"<title>{name}</title></polyline>"
        )
    legend = "".join(
        f'<text x="{margin + i * 110}" y="20" fill="{colour}" font-size="14">{name}</text>'
        for i, (_, name, colour) in enumerate(series)
    )
    zero = (
        f'<line x1="{margin}" x2="{width - margin}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999"/>'
    )
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'font-family="sans-serif">{legend}{zero}{"".join(lines)}</svg>\n',
        encoding="utf-8",
    )
