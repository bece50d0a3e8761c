"""Recorded days for `simulate --csv`: CSV files whose columns are found by their header's
names, never by position.

Two families of names are understood: the plain `time, solar_w[, grid_w][, voltage_v]`
and OpenEVSE's divert-simulator day files, whose headers are emoncms feed names
(`"Date-time string", "solar:solar", "grid:Grid import export RAW"`, `"Unix timestamp",
"Node SN2120051742:solar"`, `"voltage:AC RMS Voltage"`). Each part of a name between
colons is looked up; a trailing `(W)`, `[V]` or `()` is its unit. A file is outside
input: its size is bounded, its text must be UTF-8, every column must be known and
appear once, and every value must be plausible. Anything else is refused with one line
naming the file and what is wrong, never guessed at (a voltage read as grid power once
turned a sunny day into 0 kWh).
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from p1evse.errors import P1evseError
from p1evse.sim.house import METER_ZONE, RecordedDay, Sample, even_phases
from p1evse.sinks.charger import VOLTAGE_RANGE_V

MAX_DAY_FILE_BYTES = 32 * 1024 * 1024  # a day at 1 s is under 4 MiB
MAX_SAMPLES = 1_000_000  # over eleven days at 1 s
MAX_POWER_W = 1_000_000.0
EXPECTED = "expected time, solar_w[, grid_w][, voltage_v] by header name"
EXPECTED_TIME = "expected YYYY-MM-DD HH:MM:SS, ISO 8601 with an offset, or epoch seconds"
GAPS = ("", "null")  # a value missing from a row: the column's value before it holds
TIME_ERRORS = (ValueError, OverflowError, OSError)
SHOWN_COLUMNS = 5
SHOWN_CHARACTERS = 30


class Column(StrEnum):
    TIME = "time"
    SOLAR = "solar"
    GRID = "grid"
    VOLTAGE = "voltage"


NAMES = {
    **dict.fromkeys(
        ("time", "timestamp", "datetime", "unix timestamp", "date-time string"), Column.TIME
    ),
    **dict.fromkeys(("solar", "solar_w", "pv", "pv_w"), Column.SOLAR),
    **dict.fromkeys(
        ("grid", "grid_w", "grid_ie", "grid import export", "grid import export raw"),
        Column.GRID,
    ),
    **dict.fromkeys(("voltage", "voltage_v", "vrms", "ac rms voltage"), Column.VOLTAGE),
}
UNITS = {Column.TIME: "", Column.SOLAR: "W", Column.GRID: "W", Column.VOLTAGE: "V"}
POWER = (-MAX_POWER_W, MAX_POWER_W, f"a number of watts within ±{MAX_POWER_W:,.0f}")
LIMITS = {
    Column.SOLAR: POWER,
    Column.GRID: POWER,
    Column.VOLTAGE: (*VOLTAGE_RANGE_V, "{:g} to {:g} V".format(*VOLTAGE_RANGE_V)),
}
UNIT_SUFFIX = re.compile(r"\s*[(\[]([^)\]]*)[)\]]\s*$")


class DayFileError(P1evseError):
    """A day file that cannot be read as it is; the message is one line for the user."""


class _Row(NamedTuple):
    when: datetime  # aware
    solar_w: float | None  # None: a gap (any column), or no such column (grid, voltage)
    grid_w: float | None
    voltage_v: float | None


def read_csv(path: Path) -> RecordedDay:
    """A day from `path`: grid_w is the house without the car (+ import); without it the
    house is taken to use nothing but what PV covers. voltage_v is the grid's voltage.
    Time is `YYYY-MM-DD HH:MM:SS` (the meter's local time), ISO 8601 with an offset, or
    epoch seconds. An empty or `null` value is a gap: the column's value before it holds
    (the first one, before any), as OpenEVSE's simulator reads its day files."""
    lines = csv.reader(io.StringIO(_text(path), newline=""), skipinitialspace=True, strict=True)
    rows: list[_Row] = []
    try:
        header = next((cells for cells in lines if not _blank(cells)), None)
        if header is None:
            raise DayFileError("empty")
        columns = _columns(header)
        for cells in lines:
            if not _blank(cells):
                line = f"line {lines.line_num}"
                row = _row(cells, columns, line, rows[-1].when if rows else None)
                if row is not None:
                    rows.append(row)
                if len(rows) > MAX_SAMPLES:
                    raise DayFileError(f"{line}: more than {MAX_SAMPLES:,} samples")
        if len(rows) < 2:
            raise DayFileError(f"needs at least two samples, found {len(rows)}")
        samples = _samples(rows, columns)
    except csv.Error as exc:
        raise DayFileError(f"{path}: line {lines.line_num}: not CSV ({exc})") from None
    except DayFileError as exc:
        raise DayFileError(f"{path}: {exc}") from None
    origin = rows[0].when.astimezone(METER_ZONE).replace(tzinfo=None)
    return RecordedDay(samples, origin)


def _text(path: Path) -> str:
    """The file's text, refused when it is missing, unreadable, too large or not UTF-8
    (a byte-order mark is allowed: spreadsheets write one)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_DAY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise DayFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DayFileError(f"{path}: a directory, not a file") from None
    except OSError as exc:
        raise DayFileError(f"{path}: not readable ({exc.strerror or exc})") from None
    if len(data) > MAX_DAY_FILE_BYTES:
        raise DayFileError(f"{path}: larger than {MAX_DAY_FILE_BYTES // 2**20} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DayFileError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _columns(header: list[str]) -> dict[Column, int]:
    """Where each known column is. A header it does not understand is refused with its
    first problem, the columns found and those expected."""
    cells = [cell.strip() for cell in header]
    problems = ["no header: the first line is data"] if _is_data(cells) else []
    found: dict[Column, list[int]] = {}
    for index, cell in enumerate(cells):
        column = _column(cell, problems)
        if column is not None:
            found.setdefault(column, []).append(index)
    problems += [
        f"two {column} columns: {_listed([cells[index] for index in indices])}"
        for column, indices in found.items()
        if len(indices) > 1
    ]
    problems += [f"no {c} column" for c in (Column.TIME, Column.SOLAR) if c not in found]
    if problems:
        raise DayFileError(f"{problems[0]}; found {_listed(cells)}; {EXPECTED}")
    return {column: indices[0] for column, indices in found.items()}


def _column(cell: str, problems: list[str]) -> Column | None:
    """The column one header cell names; None, with the problem noted, when it names
    none, several, or has the wrong unit."""
    suffix = UNIT_SUFFIX.search(cell)
    name = cell[: suffix.start()] if suffix else cell
    unit = suffix.group(1).strip() if suffix else ""
    parts = (part.strip() for part in name.lower().split(":"))
    columns = list(dict.fromkeys(NAMES[part] for part in parts if part in NAMES))
    if not columns:
        problems.append(f"unknown column {_shown(cell)}")
    elif len(columns) > 1:
        problems.append(f"column {_shown(cell)} reads as {' and as '.join(columns)}")
    elif unit and unit.upper() != UNITS[columns[0]]:
        expected = UNITS[columns[0]] or "no unit"
        problems.append(f"column {_shown(cell)} is in {unit}, expected {expected}")
    else:
        return columns[0]
    return None


def _is_data(cells: list[str]) -> bool:
    """A first line that reads as a time and numbers: a file without a header."""
    try:
        _instant(cells[0])
        for cell in cells[1:]:
            float(cell)
    except (*TIME_ERRORS, IndexError):
        return False
    return True


def _blank(cells: list[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _row(
    cells: list[str], columns: dict[Column, int], line: str, after: datetime | None
) -> _Row | None:
    """One line's values (None: a gap), or None for a line without a time; a value that
    is not plausible, or a time not after the line before's, is refused."""
    if len(cells) != len(columns):
        raise DayFileError(f"{line}: {len(cells)} values for {len(columns)} columns")
    values = {column: cells[index].strip() for column, index in columns.items()}
    given = {column for column, value in values.items() if value.lower() not in GAPS}
    if Column.TIME not in given:
        return None
    time = values[Column.TIME]
    try:
        when = _instant(time, after)
    except _Skipped:
        raise DayFileError(
            f"{line}: time {_shown(time)} is not on the meter's clock: the clocks go "
            f"forward an hour there ({METER_ZONE.key})"
        ) from None
    except TIME_ERRORS:
        raise DayFileError(f"{line}: time {_shown(time)}: {EXPECTED_TIME}") from None
    if after is not None and when <= after:
        raise DayFileError(f"{line}: time {_shown(time)} is not after the line before")
    numbers = {
        column: _number(values[column], column, line) if column in given else None
        for column in (Column.SOLAR, Column.GRID, Column.VOLTAGE)
    }
    return _Row(when, numbers[Column.SOLAR], numbers[Column.GRID], numbers[Column.VOLTAGE])


def _samples(rows: list[_Row], columns: dict[Column, int]) -> list[Sample]:
    """The rows as samples, each column's gaps filled as OpenEVSE's simulator fills them
    (its TimeSeries::valueAt): with the column's value from the row before, or before
    its first value, with that first value. A column with no value at all is refused."""
    held: dict[str, list[float | None]] = {}
    for column, name in (("solar", "solar_w"), ("grid", "grid_w"), ("voltage", "voltage_v")):
        values: list[float | None] = [getattr(row, name) for row in rows]
        if Column(column) in columns:
            known = [value for value in values if value is not None]
            if not known:
                raise DayFileError(f"no {column} value on any line")
            last = known[0]
            for index, value in enumerate(values):
                values[index] = last = last if value is None else value
        held[name] = values
    start = rows[0].when
    samples = []
    for row, solar, grid, volts in zip(
        rows, held["solar_w"], held["grid_w"], held["voltage_v"], strict=True
    ):
        solar_w = solar or 0.0  # the solar column is never missing, nor its gaps once held
        load = 0.0 if grid is None else grid + solar_w
        samples.append(
            Sample((row.when - start).total_seconds(), solar_w, even_phases(load), volts)
        )
    return samples


def _instant(text: str, after: datetime | None = None) -> datetime:
    """Epoch seconds, or ISO 8601: with an offset, or naive in the meter's local time.
    Raises one of TIME_ERRORS for anything else, a time out of range included. A local
    time the clocks skipped (spring) is refused; one they passed twice (autumn) is the
    first time, or the second where the first is not after `after`."""
    try:
        seconds = float(text)
    except ValueError:
        when = datetime.fromisoformat(text)
        instant = (when if when.tzinfo else when.replace(tzinfo=METER_ZONE)).astimezone(UTC)
        if when.tzinfo is None:
            if instant.astimezone(METER_ZONE).replace(tzinfo=None) != when:
                raise _Skipped from None
            again = when.replace(tzinfo=METER_ZONE, fold=1).astimezone(UTC)
            if after is not None and instant <= after < again:
                instant = again
    else:
        instant = datetime.fromtimestamp(seconds, UTC)
    instant.astimezone(METER_ZONE)  # the day's local time is read too: out of range there
    return instant


class _Skipped(P1evseError, ValueError):
    """A local time the meter's clock never shows: the hour skipped in spring (a
    ValueError, as any time that cannot be read)."""


def _number(text: str, column: Column, line: str) -> float:
    """The column's value, refused outside its plausible range."""
    low, high, expected = LIMITS[column]
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not low <= number <= high:  # NaN and infinities too
        raise DayFileError(f"{line}: {column} {_shown(text)}: expected {expected}")
    return number


def _listed(cells: list[str]) -> str:
    """Header cells for a message: a few, each cut short, all on one line."""
    shown = ", ".join(_shown(cell) for cell in cells[:SHOWN_COLUMNS])
    more = len(cells) - SHOWN_COLUMNS
    return f"{shown} and {more} more" if more > 0 else shown


def _shown(text: str) -> str:
    cut = text if len(text) <= SHOWN_CHARACTERS else f"{text[:SHOWN_CHARACTERS]}..."
    return repr(cut)
