"""What a meter sees second by second that a day's curve does not: the household's
appliances switching on and off, a fridge's compressor, and the small restless load of
everything else.

`Household` lays these over any day (a recorded one, upsampled, or the synthetic one),
seeded, so that feeds can be compared on the signal a 1 s meter really gives: steps of
0.6 to 2.5 kW lasting 30 to 300 s about every 15 minutes (a kettle, a hob, a microwave, a
vacuum cleaner), a 100 W compressor running 15 minutes in 45, and 50 W (one standard
deviation) of noise, new each second. The same seed gives the same appliances and noise, so
two feeds compared on one seed see the same house.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from datetime import datetime

from p1evse.sim.house import Day, Sample

APPLIANCE_EVERY_S = 900.0
APPLIANCE_POWER_W = (600.0, 2_500.0)
APPLIANCE_RUN_S = (30.0, 300.0)
FRIDGE_W = 100.0
FRIDGE_ON_S, FRIDGE_PERIOD_S = 900.0, 2_700.0
NOISE_W = 50.0


@dataclass(frozen=True, slots=True)
class Appliance:
    """One appliance on one phase, from `start_s` for `duration_s` (the day's `at`)."""

    start_s: float
    duration_s: float
    power_w: float
    phase: int


@dataclass
class Household:
    """`day` with the household's appliances, fridge and noise on its load."""

    day: Day
    seed: int = 1
    appliances: list[Appliance] = field(init=False)
    _starts: list[float] = field(init=False, repr=False)
    _fridge_offset_s: float = field(init=False, repr=False)
    _noise: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = random.Random(f"household {self.seed}")
        self.appliances = []
        at = self.day.first_s + rng.expovariate(1 / APPLIANCE_EVERY_S)
        while at < self.day.last_s:
            duration = rng.uniform(*APPLIANCE_RUN_S)
            self.appliances.append(
                Appliance(at, duration, rng.uniform(*APPLIANCE_POWER_W), rng.randrange(3))
            )
            at += rng.expovariate(1 / APPLIANCE_EVERY_S)
        self._starts = [appliance.start_s for appliance in self.appliances]
        self._fridge_offset_s = rng.uniform(0, FRIDGE_PERIOD_S)
        seconds = math.ceil(self.day.last_s - self.day.first_s) + 1
        self._noise = [rng.gauss(0.0, NOISE_W) for _ in range(seconds)]

    @property
    def origin(self) -> datetime:
        return self.day.origin

    @property
    def first_s(self) -> float:
        return self.day.first_s

    @property
    def last_s(self) -> float:
        return self.day.last_s

    def sample(self, at: float) -> Sample:
        base = self.day.sample(at)
        phases = list(base.load_w)
        # the appliances switched on up to the longest run ago, found by when they were
        last = bisect.bisect_right(self._starts, at)
        first = bisect.bisect_left(self._starts, at - APPLIANCE_RUN_S[1])
        for appliance in self.appliances[first:last]:
            if at < appliance.start_s + appliance.duration_s:
                phases[appliance.phase] += appliance.power_w
        if (at + self._fridge_offset_s) % FRIDGE_PERIOD_S < FRIDGE_ON_S:
            phases[1] += FRIDGE_W
        second = min(max(int(at - self.day.first_s), 0), len(self._noise) - 1)
        # the noise is the house's (on L3), but a load is never below nothing
        phases[2] = max(0.0, phases[2] + self._noise[second])
        return Sample(at, base.solar_w, (phases[0], phases[1], phases[2]), base.voltage_v)
