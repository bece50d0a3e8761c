"""A model of OpenEVSE's solar divert and charging, written from the firmware's documented
behaviour (src/divert.cpp, src/input_filter.cpp, the claims of src/evse_man.cpp), for
simulations and the demo. Settings default to the firmware's defaults.

Divert runs only when a grid value arrives: in Eco mode it turns grid power into the
current available to the car, smooths it with an attack/decay filter that counts time
in whole seconds, and claims the charger Active at that rate (priority 50) or Disabled.
A higher-priority claim (p1evse's pause over MQTT: 500) wins over divert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DIVERT_PRIORITY = 50
MQTT_PRIORITY = 500  # every MQTT client shares this claim slot


@dataclass(frozen=True, slots=True)
class DivertSettings:
    voltage: float = 240.0  # used when no fresh vrms is fed
    three_phase: bool = False
    min_current: float = 6.0
    max_current: float = 32.0
    pv_ratio: float = 1.1
    attack_s: float = 20.0
    decay_s: float = 600.0
    min_charge_time_s: float = 600.0
    eco: bool = True


@dataclass(frozen=True, slots=True)
class Claim:
    priority: int
    active: bool
    current: float | None = None  # A; None = no limit of its own


@dataclass
class OpenEvseModel:
    settings: DivertSettings = field(default_factory=DivertSettings)
    car_connected: bool = True
    claims: dict[str, Claim] = field(default_factory=dict)
    smoothed: float = 0.0  # A, the filtered available current
    available: float = 0.0  # A, the last unfiltered value (charge rate follows it)
    _last_feed_ms: int | None = None
    _charge_started_s: float | None = None

    # -- inputs ----------------------------------------------------------------------

    def grid_ie(self, watts: int, now_s: float) -> None:
        """A grid import/export value (W, + import) arrives at `now_s`."""
        settings = self.settings
        if not settings.eco:
            return
        volts = settings.voltage * (3 if settings.three_phase else 1)
        current = watts / volts - self.pilot_draw()
        reserve = max(0.0, settings.pv_ratio - 1) * 1000 / volts
        self.available = max(0.0, -current - reserve) if current < 0 else 0.0
        self._filter(now_s)
        self._decide(now_s)

    def claim(self, client: str, claim: Claim | None) -> None:
        """Set (or with None release) a claim, as `<base>/claim/set` or HTTP claims do."""
        if claim is None:
            self.claims.pop(client, None)
        else:
            self.claims[client] = claim

    # -- what the charger does ---------------------------------------------------------

    def pilot(self) -> float:
        """The current offered to the car: the winning claim's, 0 when disabled."""
        if not self.claims:
            return 0.0
        winner = max(self.claims.values(), key=lambda claim: claim.priority)
        if not winner.active:
            return 0.0
        settings = self.settings
        wanted = winner.current if winner.current is not None else settings.max_current
        return min(max(wanted, settings.min_current), settings.max_current)

    def pilot_draw(self) -> float:
        """What the car draws (A): the pilot, if a car is there."""
        return self.pilot() if self.car_connected else 0.0

    # -- divert ---------------------------------------------------------------------

    def _filter(self, now_s: float) -> None:
        """input_filter.cpp: dt in whole seconds since the previous call (a feed less
        than 1 s after the last one leaves the filter where it was)."""
        now_ms = int(now_s * 1000)
        last = self._last_feed_ms
        dt = 0 if last is None else (now_ms - last) // 1000
        self._last_feed_ms = now_ms
        settings = self.settings
        tau = settings.attack_s if self.available > self.smoothed else settings.decay_s
        k = 1 - math.exp(-dt / max(tau, 10.0))
        self.smoothed = k * self.available + (1 - k) * self.smoothed

    def _decide(self, now_s: float) -> None:
        settings = self.settings
        rate = math.floor(self.available)
        if self.available - rate > min(1.0, settings.pv_ratio):
            rate += 1
        trigger = settings.min_current * min(1.0, settings.pv_ratio)
        own = self.claims.get("divert")
        active = own is not None and own.active
        if self.smoothed >= trigger + 0.5:
            if not active:
                self._charge_started_s = now_s
            self.claim("divert", Claim(DIVERT_PRIORITY, True, float(rate)))
            return
        if not active:
            return
        started = self._charge_started_s if self._charge_started_s is not None else now_s
        if self.smoothed <= trigger and now_s - started >= settings.min_charge_time_s:
            self.claim("divert", Claim(DIVERT_PRIORITY, False))
        else:
            self.claim("divert", Claim(DIVERT_PRIORITY, True, float(rate)))
