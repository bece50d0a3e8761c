"""A model of OpenEVSE's solar divert, current shaper and charging, written from the
firmware's documented behaviour (src/divert.cpp, src/input_filter.cpp,
src/current_shaper.cpp, the claims of src/evse_man.cpp), for simulations and the demo.
Settings default to the firmware's defaults.

Divert runs only when a grid value arrives: in Eco mode it turns grid power less the
car's measured current into the current available to the car, smooths it with an
attack/decay filter that counts time in whole seconds, and claims the charger Active at
that rate (priority 50) or Disabled, exactly as DivertTask::update_state decides: no new
claim between the trigger current and 0.5 A above it; once charging, the minimum charge
time (counted from when the charger starts to charge) keeps the last claim, rate and
all; and divert only counts itself active one update after its claim took effect, so
the first update after a start can still stop it. With OpenEVSE's scenario profiles on
its recorded days this gives the firmware's own simulator's energy and starts.
The shaper, when on, caps the current so that house + car stay under its maximum power,
and disables the charger when its feed has been silent too long. Claims are merged as
the firmware does: each property (state, charge current, maximum current) comes from
the highest-priority claim that sets it, so p1evse's pause over MQTT (500) wins over
divert, and the shaper (5000) over both.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from p1evse.settings import Section

DIVERT_PRIORITY = 50
MQTT_PRIORITY = 500  # every MQTT client shares this claim slot
SHAPER_PRIORITY = 5000  # EvseManager_Priority_Safety
SHAPER_STALE_PRIORITY = 1100  # EvseManager_Priority_Limit: the shaper's fail-safe claim

MIN_FILTER_S = 10.0
VRMS_RANGE_V = (60.0, 300.0)
VRMS_FRESH_S = 120.0
SHAPER_HYSTERESIS_A = 0.5
HYSTERESIS_A = 0.5  # EVSE_DIVERT_HYSTERESIS: above the trigger by this, divert starts


class ShaperSettings(Section):
    """The current shaper's settings (current_shaper_*)."""

    max_pwr_w: float = Field(ge=0, description="house + car stay under this, W")
    smoothing_s: float = Field(60.0, ge=0, description="its filters' time constant, s")
    min_pause_s: float = Field(
        300.0, ge=0, description="the least pause after it disabled the charger, s"
    )
    data_maxinterval_s: float = Field(
        120.0, ge=0, description="the longest silence of its live power before it disables, s"
    )


class DivertSettings(Section):
    """The charger's settings that divert and charging follow (the firmware's defaults)."""

    voltage: float = Field(
        240.0,
        ge=VRMS_RANGE_V[0],
        le=VRMS_RANGE_V[1],
        description="the voltage it believes when no fresh vrms is fed, V",
    )
    three_phase: bool = False
    min_current: float = Field(6.0, gt=0, description="the least current it charges with, A")
    max_current: float = Field(32.0, gt=0, description="the most current it offers, A")
    pv_ratio: float = Field(
        1.1,
        gt=0,
        description="below 1, the share of the least current that surplus must cover to "
        "start; above 1, (ratio - 1) kW of export is kept",
    )
    attack_s: float = Field(
        20.0, ge=0, description="the divert filter's time constant as the surplus rises, s"
    )
    decay_s: float = Field(
        600.0, ge=0, description="the divert filter's time constant as the surplus falls, s"
    )
    min_charge_time_s: float = Field(
        600.0, ge=0, description="the least time it charges once divert started it, s"
    )
    current_lag_s: float = Field(
        1.0,
        ge=0,
        description="how old the car's measured current is that divert takes off grid_ie, "
        "s: the firmware polls it every second (and a real car takes seconds to follow "
        "its pilot)",
    )
    state_seen_next_update: bool = Field(
        False,
        description="divert's loop sees the charger's state at the next update, as "
        "OpenEVSE's own simulator (divert_sim) runs it; off: at once, as on a charger",
    )
    eco: bool = True
    shaper: ShaperSettings | None = None  # the current shaper, off by default

    @model_validator(mode="after")
    def _currents_in_order(self) -> DivertSettings:
        if self.min_current > self.max_current:
            raise ValueError(
                f"min_current ({self.min_current:g} A) is above "
                f"max_current ({self.max_current:g} A)"
            )
        return self


@dataclass(frozen=True, slots=True)
class Claim:
    """What one client asks of the charger; None leaves a property to lower claims."""

    priority: int
    active: bool | None
    current: float | None = None  # A, the charge current
    max_current: float | None = None  # A, a cap (the shaper's)


class Car(Section):
    max_current: float = Field(
        32.0, gt=0, description="the most its on-board charger takes, A per phase"
    )


class InputFilter:
    """input_filter.cpp: an exponential filter whose dt is the whole seconds since its
    previous call (calls less than 1 s apart leave the value where it was), with a
    time constant of at least 10 s, or none (whole seconds, as the firmware's uint32_t:
    0 filters nothing). Its first call sets the time and leaves the value."""

    def __init__(self) -> None:
        self._last_ms: int | None = None

    def filter(self, value: float, filtered: float, tau_s: float, now_s: float) -> float:
        now_ms = int(now_s * 1000)
        dt = 0 if self._last_ms is None else (now_ms - self._last_ms) // 1000
        self._last_ms = now_ms
        tau = int(tau_s)
        k = 1 - math.exp(-dt / max(tau, MIN_FILTER_S)) if tau > 0 else 1.0
        return k * value + (1 - k) * filtered


@dataclass
class OpenEvseModel:
    settings: DivertSettings = field(default_factory=DivertSettings)
    car: Car | None = field(default_factory=Car)  # None: no car plugged in
    claims: dict[str, Claim] = field(default_factory=dict)
    smoothed: float = 0.0  # A, the filtered available current
    available: float = 0.0  # A, the last unfiltered value (charge rate follows it)
    shaper_current: float = 0.0  # A, the shaper's filtered cap
    _divert_filter: InputFilter = field(default_factory=InputFilter)
    # divert's own view (DivertTask::_state): Active only once the charger is in the
    # state divert claimed, seen at the end of an update; the minimum charge time runs
    # only then
    _divert_active: bool = False
    # the end of the minimum charge time: set when divert's loop, on its tick, sees the
    # charger start charging, for whatever reason (_min_charge_end)
    _min_charge_end_s: float = 0.0
    _charging_seen: bool = False  # the charging state at the tick before
    _loop_saw_charging: bool = False  # the charging state divert's loop last saw
    # state_seen_next_update: the state changed at the tick before, so the loop runs now
    _loop_woken: bool = False
    # the car's current as it changed: (since when, A), oldest first, for current_lag_s
    _drawn: deque[tuple[float, float]] = field(default_factory=deque)
    _vrms: tuple[float, float] | None = None  # (volts, when)
    _shaper: _Shaper | None = None

    def __post_init__(self) -> None:
        if self.settings.shaper is not None:
            self._shaper = _Shaper(self.settings.shaper)

    # -- inputs ----------------------------------------------------------------------

    def grid_ie(self, watts: int, now_s: float) -> None:
        """A grid import/export value (W, + import) arrives at `now_s`."""
        settings = self.settings
        if not settings.eco:
            return
        volts = self.voltage(now_s) * (3 if settings.three_phase else 1)
        self._record_amps(now_s)  # a claim from elsewhere may have changed it
        current = watts / volts - self._measured_amps(now_s)
        reserve = max(0.0, settings.pv_ratio - 1) * 1000 / volts
        self.available = max(0.0, -current - reserve) if current < 0 else 0.0
        tau = settings.attack_s if self.available > self.smoothed else settings.decay_s
        self.smoothed = self._divert_filter.filter(self.available, self.smoothed, tau, now_s)
        charger_active = self._active()  # as the claims so far have made it
        self._decide(now_s)
        own = self.claims.get("divert")
        divert_active = own is not None and own.active is True
        if divert_active == charger_active:
            self._divert_active = divert_active
        self._record_amps(now_s)

    def vrms(self, volts: float, now_s: float) -> None:
        """A voltage on `mqtt_vrms` (or POST /status `voltage`): used for 120 s when
        within 60-300 V, ignored otherwise."""
        low, high = VRMS_RANGE_V
        if low <= volts <= high:
            self._vrms = (volts, now_s)

    def live_pwr(self, watts: int, now_s: float) -> None:
        """A site power on `mqtt_live_pwr` (W, + import, the car included), for the
        shaper; ignored when the shaper is off."""
        if self._shaper is not None:
            claim = self._shaper.update(watts, self, now_s)
            self.claims["shaper"] = claim

    def tick(self, now_s: float) -> None:
        """The firmware's periodic tasks: divert's loop sees the charger's state (a
        charge that started starts the minimum charge time), and the shaper disables the
        charger when its feed has been silent longer than its maximum interval."""
        self._record_amps(now_s)
        charging = self.amps() > 0
        changed = charging != self._charging_seen
        self._charging_seen = charging
        # DivertTask::loop, woken by the change: at once on a charger, at the next tick
        # as divert_sim runs it (where it may find the state back where it last saw it)
        woken = changed
        if self.settings.state_seen_next_update:
            woken, self._loop_woken = self._loop_woken, changed
        if woken and charging != self._loop_saw_charging:
            self._loop_saw_charging = charging
            if charging:
                self._min_charge_end_s = now_s + self.settings.min_charge_time_s
        if self._shaper is not None:
            claim = self._shaper.check(now_s)
            if claim is not None:
                self.claims["shaper"] = claim

    def claim(self, client: str, claim: Claim | None) -> None:
        """Set (or with None release) a claim, as `<base>/claim/set` or HTTP claims do."""
        if claim is None:
            self.claims.pop(client, None)
        else:
            self.claims[client] = claim

    # -- what the charger does ---------------------------------------------------------

    def voltage(self, now_s: float) -> float:
        """A fresh vrms, else the configured voltage."""
        if self._vrms is not None and now_s - self._vrms[1] <= VRMS_FRESH_S:
            return self._vrms[0]
        return self.settings.voltage

    def pilot(self) -> float:
        """The current offered to the car (A): 0 unless the claims let it charge."""
        if not self._active():
            return 0.0
        settings = self.settings
        current = self._winning("current")
        wanted = settings.max_current if current is None else current
        cap = self._winning("max_current")
        if cap is not None:
            wanted = min(wanted, cap)
        return min(max(wanted, settings.min_current), settings.max_current)

    def amps(self) -> float:
        """What the car draws (A per phase): the pilot, up to what the car takes."""
        if self.car is None:
            return 0.0
        return min(self.pilot(), self.car.max_current)

    def _record_amps(self, now_s: float) -> None:
        """Note the car's current when it changed, keeping what `current_lag_s` needs."""
        amps = self.amps()
        drawn = self._drawn
        if not drawn or drawn[-1][1] != amps:
            drawn.append((now_s, amps))
        while len(drawn) > 1 and drawn[1][0] <= now_s - self.settings.current_lag_s:
            drawn.popleft()

    def _measured_amps(self, now_s: float) -> float:
        """The car's current as divert knows it: as it was `current_lag_s` ago (as
        recorded at the updates and ticks), or as it is when there is no lag."""
        lag = self.settings.current_lag_s
        if not lag:
            return self.amps()
        measured = 0.0
        for since, amps in self._drawn:
            if since > now_s - lag:
                break
            measured = amps
        return measured

    def _active(self) -> bool:
        """Whether the winning claim lets it charge. Without any claim on the state
        it does what its mode says: charge in normal mode, wait for divert in Eco mode."""
        active = self._winning("active")
        return not self.settings.eco if active is None else bool(active)

    def _winning(self, name: str) -> float | bool | None:
        """The highest-priority claim's value of one property, among those that set it."""
        ranked = sorted(self.claims.values(), key=lambda claim: claim.priority, reverse=True)
        for claim in ranked:
            value: float | bool | None = getattr(claim, name)
            if value is not None:
                return value
        return None

    # -- divert ---------------------------------------------------------------------

    def _decide(self, now_s: float) -> None:
        """DivertTask::update_state's claims. Above the trigger plus the hysteresis:
        Active at the rate of the unsmoothed current. At or below the trigger: Disabled,
        once divert sees itself active and the minimum charge time is over; until then
        the last claim stays, its rate frozen. In between: no new claim."""
        settings = self.settings
        rate = math.floor(self.available)
        if self.available - rate > min(1.0, settings.pv_ratio):
            rate += 1
        trigger = settings.min_current * min(1.0, settings.pv_ratio)
        if self.smoothed >= trigger + HYSTERESIS_A:
            self.claim("divert", Claim(DIVERT_PRIORITY, True, float(rate)))
            return
        own = self.claims.get("divert")
        active = own is not None and own.active is True
        if self.smoothed <= trigger and active and self._min_charge_remaining(now_s) == 0:
            self.claim("divert", Claim(DIVERT_PRIORITY, False))

    def _min_charge_remaining(self, now_s: float) -> float:
        """getMinChargeTimeRemaining: while divert sees itself active and the car
        charges, the time to the end of the minimum charge time."""
        charging = self.amps() > 0
        if self._divert_active and charging and now_s < self._min_charge_end_s:
            return self._min_charge_end_s - now_s
        return 0.0


class _Shaper:
    """current_shaper.cpp: cap = (max_pwr - live) / V + the car's own current, smoothed;
    below the minimum current the charger is disabled, and let go again only after the
    minimum pause and with 0.5 A to spare. Without a live value for longer than the
    maximum interval (or none yet) the charger is disabled."""

    def __init__(self, settings: ShaperSettings) -> None:
        self._settings = settings
        self._live = 0.0
        self._smoothed_live = 0.0
        self._cap = 0.0
        self._paused_at: float | None = None
        self._updated_at: float | None = None
        self._live_filter = InputFilter()
        self._cap_filter = InputFilter()
        self._disabled = Claim(SHAPER_STALE_PRIORITY, False)

    def update(self, watts: int, model: OpenEvseModel, now_s: float) -> Claim:
        settings = self._settings
        self._live = float(watts)
        self._updated_at = now_s
        if self._paused_at is None or self._live > self._smoothed_live:
            self._smoothed_live = self._live
        else:
            self._smoothed_live = self._live_filter.filter(
                self._live, self._smoothed_live, settings.smoothing_s, now_s
            )
        phases = 3 if model.settings.three_phase else 1
        wanted = (settings.max_pwr_w - self._smoothed_live) / model.voltage(now_s) / phases
        wanted += model.amps()
        self._cap = self._cap_filter.filter(wanted, self._cap, settings.smoothing_s, now_s)
        minimum = model.settings.min_current
        active: bool | None = None
        if self._cap < minimum:
            active = False
            if self._paused_at is None:
                self._paused_at = now_s
        elif self._paused_at is not None:
            rested = now_s - self._paused_at >= settings.min_pause_s
            if rested and self._cap - minimum >= SHAPER_HYSTERESIS_A:
                self._paused_at = None
            else:
                active = False
        return Claim(SHAPER_PRIORITY, active, max_current=float(math.floor(self._cap)))

    def check(self, now_s: float) -> Claim | None:
        """The fail-safe claim when the feed is silent (or never came), else None."""
        updated = self._updated_at
        if updated is not None and now_s - updated <= self._settings.data_maxinterval_s:
            return None
        if updated is not None:
            self._updated_at = None
            self._paused_at = now_s
            self._smoothed_live = self._live
        return self._disabled
