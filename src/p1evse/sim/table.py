"""`simulate`'s report as a table that fits a terminal: a row per run, its settings
first (a column per key `--compare` varies), then the day's figures, units in the
two-line header. When the settings do not fit, the runs are numbered and their
settings listed under the table."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 100
GAP = "  "
# summary key -> its header's two lines
FIGURES = {
    "pv_kwh": ("PV", "kWh"),
    "house_kwh": ("house", "kWh"),
    "ev_kwh": ("EV", "kWh"),
    "ev_solar_kwh": ("EV solar", "kWh"),
    "ev_grid_kwh": ("EV grid", "kWh"),
    "grid_import_while_charging_kwh": ("import while", "charging kWh"),
    "export_kwh": ("export", "kWh"),
    "charge_starts": ("", "starts"),
    "current_changes": ("current", "changes"),
    "charging_hours": ("charging", "h"),
}
# the day's own figures: with several runs of one day, the same in each, so said once
DAY_FIGURES = {"pv_kwh": ("PV", "kWh"), "house_kwh": ("house", "kWh")}
KEY_LINE = 10  # a setting's name longer than this is split at an underscore


def table(runs: Sequence[tuple[Mapping[str, str], Mapping[str, Any]]], width: int = WIDTH) -> str:
    """`runs`: each run's settings (key -> value as typed) and its summary. Figures
    that are the same in every one of several runs (the day's PV and house) are said
    once, above the table."""
    shown = dict(FIGURES)
    above: list[str] = []
    for key, (name, unit) in DAY_FIGURES.items():
        cells = {_cell(summary[key]) for _, summary in runs}
        if len(runs) > 1 and len(cells) == 1:
            above.append(f"{name} {cells.pop()} {unit}")
            del shown[key]
    figures = [_column(shown[key], [_cell(summary[key]) for _, summary in runs]) for key in shown]
    keys = list(runs[0][0]) if runs else []
    settings = [_column(_split(key), [values[key] for values, _ in runs]) for key in keys]
    header = [f"{', '.join(above)}: the same day in every run"] if above else []
    text = header + _lines(settings + figures, left=len(settings))
    if max(map(len, text)) <= width:
        return "\n".join(text)
    numbers = _column(("", "run"), [f"#{n}" for n in range(1, len(runs) + 1)])
    text = header + _lines([numbers, *figures], left=1)
    for n, (values, _) in enumerate(runs, 1):
        setting = " ".join(f"{key}={value}" for key, value in values.items())
        text += textwrap.wrap(setting, width, initial_indent=f"#{n}: ", subsequent_indent="    ")
    return "\n".join(text)


def _column(header: tuple[str, str], cells: list[str]) -> list[str]:
    return [*header, *cells]


def _lines(columns: list[list[str]], left: int) -> list[str]:
    """Rows of `columns` (each its two header lines, then its cells); the first `left`
    aligned left, the others right."""
    widths = [max(map(len, column)) for column in columns]
    rows = []
    for row in zip(*columns, strict=True):
        cells = [
            cell.ljust(width) if n < left else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        rows.append(GAP.join(cells).rstrip())
    return rows


def _split(key: str) -> tuple[str, str]:
    """A setting's name in the header: on one line, or two at an underscore."""
    if len(key) <= KEY_LINE or "_" not in key:
        return ("", key)
    cut = max((i for i, c in enumerate(key) if c == "_" and i <= KEY_LINE), default=key.index("_"))
    return (key[:cut], key[cut + 1 :])


def _cell(value: Any) -> str:
    # + 0.0: what rounds to zero is 0.00, never -0.00
    return f"{round(value, 2) + 0.0:.2f}" if isinstance(value, float) else str(value)
