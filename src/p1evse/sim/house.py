"""The meter side of a simulation: a house with PV and a car, read as a DSMR 5 meter.

A day says what the house does without the car: PV production and the household's
consumption per phase, either generated (`SyntheticDay`: a base load, a fridge and
appliances switched on at seeded random times; a clear-sky PV curve with seeded clouds)
or from a recorded day (`RecordedDay`, e.g. OpenEVSE's divert-simulator CSV files, read
by `sim/dayfile.py`).
`House.read` adds the car, drawing what the charger lets it, and gives what the meter
at the grid connection states: import and export exclusive at the totals (the meter
nets the phases), the per-phase powers and voltages, its energy counters and its
clock, at the meter's resolution (1 W, 0.1 V). `sim/meter.py` sends such readings on
as DSMR-reader's topics or as P1 telegrams; `simulate` feeds them to the pipeline.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import Field

from p1evse.model import Reading
from p1evse.settings import Section

DAY_S = 86_400.0
METER_ZONE = ZoneInfo("Europe/Amsterdam")  # DSMR clocks state local time with S/W
Triple = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Sample:
    """The house at one moment, without the car (W), and the grid's voltage where the
    day records it."""

    at: float  # seconds since the day's `origin`
    solar_w: float
    load_w: Triple  # the household's consumption on L1, L2, L3
    voltage_v: float | None = None

    @property
    def net_w(self) -> float:
        """What the meter would show without the car: + import, - export."""
        return sum(self.load_w) - self.solar_w


class Day(Protocol):
    @property
    def origin(self) -> datetime:
        """The wall clock (local, naive) at `at` = 0."""

    @property
    def first_s(self) -> float: ...

    @property
    def last_s(self) -> float: ...

    def sample(self, at: float) -> Sample: ...


@dataclass(frozen=True, slots=True)
class _Appliance:
    start_s: float
    duration_s: float
    power_w: float
    phase: int


@dataclass
class SyntheticDay:
    """A generated day, `at` in seconds since midnight; the same seed, the same day."""

    seed: int = 1
    peak_pv_w: float = 4_500.0
    base_load_w: float = 220.0
    origin: datetime = datetime(2026, 6, 21)
    first_s: float = 6 * 3600.0
    last_s: float = 21 * 3600.0
    _appliances: list[_Appliance] = field(init=False, repr=False)
    _clouds: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        # (W, s): a kettle, a washing machine, an oven, a dishwasher
        kinds = [(2_000.0, 180.0), (2_200.0, 3_600.0), (1_200.0, 900.0), (800.0, 1_800.0)]
        self._appliances = []
        for _ in range(12):
            power, duration = rng.choice(kinds)
            start = rng.uniform(6, 23) * 3600
            self._appliances.append(_Appliance(start, duration, power, rng.randrange(3)))
        cover, self._clouds = 0.0, []
        for _ in range(24 * 60 + 1):  # one value a minute, a mean-reverting walk
            cover = min(0.8, max(0.0, cover + rng.gauss(-0.08 * cover, 0.06)))
            self._clouds.append(cover)

    def sample(self, at: float) -> Sample:
        return Sample(at, self.pv_w(at), self.load_w(at))

    def pv_w(self, at: float) -> float:
        hour = (at % DAY_S) / 3600
        if not 6.5 < hour < 20.5:
            return 0.0
        clear = self.peak_pv_w * math.sin(math.pi * (hour - 6.5) / 14) ** 1.5
        minute = (at % DAY_S) / 60
        low = int(minute)
        cover = self._clouds[low] + (self._clouds[low + 1] - self._clouds[low]) * (minute - low)
        pv: float = clear * (1 - cover)
        return pv

    def load_w(self, at: float) -> Triple:
        time_of_day = at % DAY_S
        base = self.base_load_w / 3
        phases = [base, base, base]
        if (time_of_day // 600) % 3 == 0:
            phases[0] += 90.0  # the fridge's compressor, 10 minutes in 30
        for a in self._appliances:
            if a.start_s <= time_of_day < a.start_s + a.duration_s:
                phases[a.phase] += a.power_w
        return (phases[0], phases[1], phases[2])


@dataclass
class RecordedDay:
    """Recorded samples, linear in between; the load is taken as spread evenly over the
    phases (the files give one figure). A voltage is either in every sample or in none."""

    samples: list[Sample]
    origin: datetime
    first_s: float = field(init=False)
    last_s: float = field(init=False)
    _times: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.samples) < 2:
            raise ValueError("a recorded day needs at least two samples")
        self._times = [sample.at for sample in self.samples]
        self.first_s, self.last_s = self._times[0], self._times[-1]

    def sample(self, at: float) -> Sample:
        index = min(max(bisect.bisect_right(self._times, at), 1), len(self._times) - 1)
        a, b = self.samples[index - 1], self.samples[index]
        f = 0.0 if b.at == a.at else min(1.0, max(0.0, (at - a.at) / (b.at - a.at)))
        load = sum(a.load_w) + f * (sum(b.load_w) - sum(a.load_w))
        volts = None
        if a.voltage_v is not None and b.voltage_v is not None:
            volts = a.voltage_v + f * (b.voltage_v - a.voltage_v)
        return Sample(at, a.solar_w + f * (b.solar_w - a.solar_w), even_phases(load), volts)

    def period_s(self) -> float:
        """The median spacing of the samples: the day's own meter period."""
        gaps = sorted(b - a for a, b in itertools.pairwise(self._times))
        return gaps[len(gaps) // 2]


def even_phases(watts: float) -> Triple:
    """One figure for the whole house, spread evenly over the three phases."""
    third = watts / 3
    return (third, third, third)


# -- the house and its meter ---------------------------------------------------------------


class HouseSettings(Section):
    voltage_v: float = Field(230.0, ge=60, le=300, description="the grid's nominal voltage, V")
    recorded_voltage: bool = Field(
        True, description="a day's recorded voltage, where it has one, wins"
    )
    pv_phases: Literal[1, 3] = Field(
        1, description="a single-phase inverter on L1, or a three-phase one"
    )
    car_phases: Literal[1, 3] = Field(1, description="the charger on L1, or on all three")
    # the grid's impedance per phase seen from the meter: the voltage drops with import
    # and rises with export, as real meters show
    impedance_ohm: float = Field(0.25, ge=0)
    # the meter's energy counters at the start (kWh): tariff 1, tariff 2
    delivered_kwh: tuple[float, float] = (4_321.123, 3_456.789)
    returned_kwh: tuple[float, float] = (1_234.567, 2_345.678)


@dataclass(frozen=True, slots=True)
class Metered:
    """One step of the house: the truth (for the energy balance) and what the meter says."""

    sample: Sample
    car_w: float
    grid_w: float  # + import, - export: load + car - PV
    reading: Reading
    phase_current_a: tuple[int, int, int]
    delivered_kwh: tuple[float, float]
    returned_kwh: tuple[float, float]
    tariff: int  # 1 low (nights and weekends), 2 normal


class House:
    def __init__(self, day: Day, settings: HouseSettings | None = None) -> None:
        self.day = day
        self.settings = settings or HouseSettings()
        self._delivered = list(self.settings.delivered_kwh)
        self._returned = list(self.settings.returned_kwh)
        self._last_at: float | None = None
        self._last_grid_w = 0.0
        self._origin_utc = day.origin.replace(tzinfo=METER_ZONE).astimezone(UTC)

    def read(self, at: float, car_amps: float) -> Metered:
        """The meter at `at`, the car drawing `car_amps` per phase."""
        settings = self.settings
        sample = self.day.sample(at)
        volts = settings.voltage_v
        if settings.recorded_voltage and sample.voltage_v is not None:
            volts = sample.voltage_v
        pv_share = sample.solar_w / settings.pv_phases
        car_share = car_amps * volts
        net = [
            load
            - (pv_share if phase < settings.pv_phases else 0.0)
            + (car_share if phase < settings.car_phases else 0.0)
            for phase, load in enumerate(sample.load_w)
        ]
        grid_w = sum(net)
        meter_time = self._origin_utc + timedelta(seconds=math.floor(at))
        tariff = _tariff(meter_time)
        self._count(at, tariff)
        self._last_grid_w = grid_w
        phase_import = _triple(max(watts, 0.0) for watts in net)
        phase_export = _triple(max(-watts, 0.0) for watts in net)
        voltage = _triple((volts - settings.impedance_ohm * watts / volts for watts in net), 1)
        reading = Reading(
            at,
            round(max(grid_w, 0.0)),
            round(max(-grid_w, 0.0)),
            phase_import,
            phase_export,
            voltage,
            meter_time,
        )
        current = (
            round(abs(net[0]) / volts),
            round(abs(net[1]) / volts),
            round(abs(net[2]) / volts),
        )
        return Metered(
            sample,
            car_share * settings.car_phases,
            grid_w,
            reading,
            current,
            (round(self._delivered[0], 3), round(self._delivered[1], 3)),
            (round(self._returned[0], 3), round(self._returned[1], 3)),
            tariff,
        )

    def _count(self, at: float, tariff: int) -> None:
        """The energy counters run on the power of the step just ended."""
        if self._last_at is not None:
            kwh = self._last_grid_w * (at - self._last_at) / 3_600_000
            counter = self._delivered if kwh > 0 else self._returned
            counter[tariff - 1] += abs(kwh)
        self._last_at = at


def _triple(values: Iterable[float], digits: int = 0) -> Triple:
    """Three values at the meter's resolution."""
    one, two, three = (round(value, digits) for value in values)
    return (one, two, three)


def _tariff(utc: datetime) -> int:
    local = utc.astimezone(METER_ZONE)
    return 1 if local.weekday() >= 5 or not 7 <= local.hour < 23 else 2
