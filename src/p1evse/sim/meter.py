"""A simulated household meter on a sunny day, published like DSMR-reader does."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from p1evse.mqtt import Broker

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class _Appliance:
    start_s: float
    duration_s: float
    power_w: float


@dataclass
class SunnyDay:
    """Net grid power of a house with PV: a clear-sky curve with passing clouds, a base
    load, a fridge cycling, and appliances switched on at seeded random times."""

    seed: int = 1
    peak_pv_w: float = 4_500.0
    base_load_w: float = 220.0
    _appliances: list[_Appliance] = field(init=False, repr=False)
    _clouds: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        kinds = [(2_000.0, 180.0), (2_200.0, 3_600.0), (1_200.0, 900.0), (800.0, 1_800.0)]
        self._appliances = []
        for _ in range(12):
            power, duration = rng.choice(kinds)
            self._appliances.append(_Appliance(rng.uniform(6, 23) * 3600, duration, power))
        cover, self._clouds = 0.0, []
        for _ in range(24 * 60 + 1):  # one value a minute, a mean-reverting walk
            cover = min(0.8, max(0.0, cover + rng.gauss(-0.08 * cover, 0.06)))
            self._clouds.append(cover)

    def pv_w(self, t: float) -> float:
        hour = (t % DAY_S) / 3600
        if not 6.5 < hour < 20.5:
            return 0.0
        clear = self.peak_pv_w * math.sin(math.pi * (hour - 6.5) / 14) ** 1.5
        minute = (t % DAY_S) / 60
        low = int(minute)
        cover = self._clouds[low] + (self._clouds[low + 1] - self._clouds[low]) * (minute - low)
        pv: float = clear * (1 - cover)
        return pv

    def house_w(self, t: float) -> float:
        t_of_day = t % DAY_S
        fridge = 90.0 if (t_of_day // 600) % 3 == 0 else 0.0
        appliances = sum(
            a.power_w for a in self._appliances if a.start_s <= t_of_day < a.start_s + a.duration_s
        )
        return self.base_load_w + fridge + appliances

    def net_w(self, t: float) -> float:
        """+ import / - export at the grid connection, at time of day `t` seconds."""
        return self.house_w(t) - self.pv_w(t)


@dataclass
class DsmrReaderPublisher:
    """Publishes like DSMR-reader: kW with three decimals on the split topics, retained,
    and a payload identical to the previous one on its topic is not sent again."""

    broker: Broker
    delivered_topic: str = "dsmr/reading/electricity_currently_delivered"
    returned_topic: str = "dsmr/reading/electricity_currently_returned"
    _previous: dict[str, str] = field(default_factory=dict)

    def publish(self, net_w: float) -> None:
        delivered = max(net_w, 0.0) / 1000
        returned = max(-net_w, 0.0) / 1000
        for topic, kw in ((self.delivered_topic, delivered), (self.returned_topic, returned)):
            payload = f"{kw:.3f}"
            if self._previous.get(topic) != payload and self.broker.publish(
                topic, payload, retain=True
            ):
                self._previous[topic] = payload
