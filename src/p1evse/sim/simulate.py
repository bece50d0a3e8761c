"""`p1evse simulate`: a day of house, PV and car in virtual time, through the same Site
as the service (pipeline rules, averaging, stale guard, the MQTT sink's rules) and the
OpenEVSE model on a virtual broker.

Each step the house's meter is read, the car drawing what the charger offers; the
reading reaches the site's intake directly or, with `meter="telegram"`, as a DSMR 5
telegram through the `p1` source's own framing and decoder; the pipeline decides what to
publish, the sink sends it; OpenEVSE's divert (and shaper, and vrms when fed) reacts to
each value, and the car draws the new current from the next step on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from p1evse.mqtt import MqttSettings
from p1evse.pipeline import PublishSettings
from p1evse.sim.charger import ChargerTopics, SimulatedCharger
from p1evse.sim.house import Day, House, HouseSettings, Metered
from p1evse.sim.meter import dsmr5_telegram
from p1evse.sim.openevse import Car, DivertSettings, OpenEvseModel
from p1evse.sim.virtual import VirtualBroker, VirtualClock
from p1evse.sinks.charger import OpenevseSettings
from p1evse.site import Ports, Role, Site, SiteSettings, build_site
from p1evse.sources.framing import TelegramStream
from p1evse.sources.telegram import DSMR_VERSIONS, FastDecoder

MeterPath = Literal["direct", "telegram"]
# steps of one run, as many as a day file's samples (over eleven days at 1 s): a day at
# its own period runs, and a tiny step is refused before it runs for days
MAX_STEPS = 1_000_000
MIN_STEPS = 2  # a step longer than the day is no run of it


@dataclass(frozen=True, slots=True)
class Outage:
    start_s: float  # seconds from the day's first sample
    duration_s: float

    def covers(self, since_first_s: float) -> bool:
        return self.start_s <= since_first_s < self.start_s + self.duration_s


class TracePoint(NamedTuple):
    """One step of the day, for the plot."""

    t: float
    pv_w: float
    house_w: float
    car_w: float
    grid_w: float  # + import
    published_w: float | None  # what p1evse sent in this step, if anything
    pilot_a: float


@dataclass
class Result:
    pv_kwh: float = 0.0
    house_kwh: float = 0.0
    ev_kwh: float = 0.0
    ev_solar_kwh: float = 0.0
    grid_import_while_charging_kwh: float = 0.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    charging_hours: float = 0.0
    start_times: list[float] = field(default_factory=list)  # the car's starts, the day's `at`
    # steps in which the pilot current or charging on/off differs from the step before
    current_changes: int = 0
    trace: list[TracePoint] = field(default_factory=list, repr=False)
    # the step before's pilot (A) and whether the car charged
    _pilot: tuple[float, bool] | None = field(default=None, repr=False)

    @property
    def charge_starts(self) -> int:
        return len(self.start_times)

    def summary(self) -> dict[str, Any]:
        return {
            "pv_kwh": _rounded(self.pv_kwh),
            "house_kwh": _rounded(self.house_kwh),
            "ev_kwh": _rounded(self.ev_kwh),
            "ev_solar_kwh": _rounded(self.ev_solar_kwh),
            "ev_grid_kwh": _rounded(self.ev_kwh - self.ev_solar_kwh),
            "grid_import_while_charging_kwh": _rounded(self.grid_import_while_charging_kwh),
            "export_kwh": _rounded(self.export_kwh),
            "charge_starts": self.charge_starts,
            "current_changes": self.current_changes,
            "charging_hours": _rounded(self.charging_hours),
        }

    def add(self, metered: Metered, hours: float, pilot_a: float) -> None:
        """The energy of one step, at the power the car drew during it, and whether
        the charger's current changed (its pilot, or charging on or off)."""
        sample, car_w, grid_w = metered.sample, metered.car_w, metered.grid_w
        before, pilot = self._pilot, (pilot_a, car_w > 0)
        if before is not None and pilot != before:
            self.current_changes += 1
        self._pilot = pilot
        house_w = sum(sample.load_w)
        self.pv_kwh += sample.solar_w * hours / 1000
        self.house_kwh += house_w * hours / 1000
        self.ev_kwh += car_w * hours / 1000
        surplus = max(0.0, sample.solar_w - house_w)
        self.ev_solar_kwh += min(car_w, surplus) * hours / 1000
        self.import_kwh += max(grid_w, 0.0) * hours / 1000
        self.export_kwh += max(-grid_w, 0.0) * hours / 1000
        if car_w > 0:
            self.grid_import_while_charging_kwh += max(grid_w, 0.0) * hours / 1000
            self.charging_hours += hours
            if before is None or not before[1]:
                self.start_times.append(sample.at)


def _rounded(value: float) -> float:
    """To the report's 3 decimals; what rounds to zero is 0.0, never -0.0."""
    return round(value, 3) + 0.0


def simulate(
    day: Day,
    publish: PublishSettings,
    divert: DivertSettings,
    step_s: float,
    *,
    house: HouseSettings | None = None,
    outage: Outage | None = None,
    vrms: bool = False,
    meter: MeterPath = "direct",
    car: Car | None = None,
    jitter_s: float = 0.0,
    seed: int = 0,
    trace: bool = False,
    progress: Callable[[float], None] | None = None,
) -> Result:
    """One day. `vrms`: p1evse feeds the meter's voltage too (`openevse.voltage`); the
    shaper's live power goes whenever the model has a shaper, as `openevse.shaper`
    sends it. `car` None is the default car (`Car()`). Each reading reaches p1evse
    (and what it publishes, the charger) a delay after the meter's tick, drawn from 0 to
    `jitter_s` with `seed`: on a network, a 1 s meter is not heard exactly 1 s apart,
    and OpenEVSE's filter counts whole seconds. `progress` is told the fraction done now
    and then."""
    if house is None:
        house = HouseSettings(voltage_v=divert.voltage, car_phases=3 if divert.three_phase else 1)
    if divert.three_phase and house.car_phases != 3:
        raise ValueError("a three-phase charger needs house.car_phases = 3")
    if not 0 <= jitter_s < step_s:
        raise ValueError(f"jitter {jitter_s:g} s: expected at least 0 and under the step")
    rng = random.Random(seed)
    home = House(day, house)
    result = Result()
    loop = _ClosedLoop.start(
        day.first_s, publish, divert, car if car is not None else Car(), vrms=vrms
    )
    charger = loop.charger
    read = (_telegram_path if meter == "telegram" else _direct_path)(loop.site, loop.clock)
    problem = step_refused(day, step_s)
    if problem is not None:
        raise ValueError(f"step {step_s:g} s: {problem}")
    hours = step_s / 3600
    steps = step_count(day, step_s)
    report_every = max(1, steps // 100)
    for n in range(steps):
        t = day.first_s + n * step_s
        metered = home.read(t, charger.model.amps())
        arrival = t + rng.uniform(0, jitter_s) if jitter_s else t
        loop.published.clear()
        loop.clock.advance(arrival)  # the pipeline's timers: pair window, stale, fail-safe
        if outage is None or not outage.covers(t - day.first_s):
            read(metered)
        charger.tick()
        pilot = charger.model.pilot()
        result.add(metered, hours, pilot)
        if trace:
            published = loop.published[-1] if loop.published else None
            result.trace.append(_trace_point(t, metered, published, pilot))
        if progress is not None and n % report_every == 0:
            progress(n / steps)
    loop.site.bridge.stop()
    return result


def step_count(day: Day, step_s: float) -> int:
    return int((day.last_s - day.first_s) / step_s) + 1


def step_refused(day: Day, step_s: float) -> str | None:
    """Why a run of `day` at `step_s` is refused: more than `MAX_STEPS` steps, or fewer
    than `MIN_STEPS` (a step so long that its figures say nothing of the day)."""
    length = day.last_s - day.first_s
    steps = step_count(day, step_s)
    shown = f"{steps:,}" if steps < 10**15 else f"{float(steps):.3g}"
    shown += " step" if steps == 1 else " steps"
    if steps > MAX_STEPS:
        return (
            f"{shown} for this day's {length:,.0f} s; a run is at most {MAX_STEPS:,} "
            f"steps: a step over {length / MAX_STEPS:g} s"
        )
    if steps < MIN_STEPS:
        return (
            f"{shown} for this day's {length:,.0f} s; a run is at least {MIN_STEPS} "
            f"steps: a step of at most {length / (MIN_STEPS - 1):g} s"
        )
    return None


@dataclass(frozen=True, slots=True)
class _ClosedLoop:
    """p1evse's Site and the simulated charger on one virtual broker and clock: the
    sinks feed the charger as they feed a real one, with every rule they keep."""

    clock: VirtualClock
    site: Site
    charger: SimulatedCharger
    published: list[float]  # the values the charger got in this step

    @classmethod
    def start(
        cls, now: float, publish: PublishSettings, divert: DivertSettings, car: Car, *, vrms: bool
    ) -> _ClosedLoop:
        clock, broker = VirtualClock(now), VirtualBroker()
        settings = _site_settings(publish, vrms=vrms, shaper=divert.shaper is not None)
        site = build_site(settings, Ports(clock, broker), Role(source=False), name="simulate")
        published: list[float] = []
        openevse = settings.openevse
        topics = ChargerTopics(
            openevse.grid_ie_topic,
            openevse.base_topic,
            vrms=openevse.vrms_topic if openevse.voltage else None,
            live_pwr=openevse.live_pwr_topic if openevse.shaper else None,
        )
        model = OpenEvseModel(divert, car)
        charger = SimulatedCharger(model, broker, topics, clock.time, published.append)
        broker.connect()
        site.start()
        return cls(clock, site, charger, published)


def _trace_point(t: float, metered: Metered, published: float | None, pilot: float) -> TracePoint:
    sample = metered.sample
    return TracePoint(
        t, sample.solar_w, sum(sample.load_w), metered.car_w, metered.grid_w, published, pilot
    )


def _site_settings(publish: PublishSettings, *, vrms: bool, shaper: bool) -> SiteSettings:
    """The service's settings for the simulated site: its publish rules, the charger over
    MQTT (the voltage and the shaper's feed as asked), nothing else on the broker."""
    return SiteSettings(
        mqtt=MqttSettings(state_topic=None),
        publish=publish,
        openevse=OpenevseSettings(voltage=vrms, shaper=shaper, deadman=False),
    )


def _direct_path(site: Site, clock: VirtualClock) -> Callable[[Metered], None]:
    def read(metered: Metered) -> None:
        """Stamped with its arrival, as sources stamp readings with the loop's time."""
        site.intake.reading(replace(metered.reading, at=clock.time()))

    return read


def _telegram_path(site: Site, clock: VirtualClock) -> Callable[[Metered], None]:
    """Each reading as the P1 port's telegram, cut and decoded by the `p1` source's
    own framing and fast decoder, into the site."""
    stream = TelegramStream(FastDecoder(DSMR_VERSIONS["5"]), site.intake, clock.time)

    def read(metered: Metered) -> None:
        stream.feed(dsmr5_telegram(metered))

    return read


def balance_error(result: Result) -> float:
    """house + car = PV + import - export, as a fraction of the energy that flowed."""
    used = result.house_kwh + result.ev_kwh
    supplied = result.pv_kwh + result.import_kwh - result.export_kwh
    return abs(used - supplied) / max(used, supplied, 1e-9)
