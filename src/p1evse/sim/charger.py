"""A simulated OpenEVSE on MQTT: the divert model behind the charger's real topics.

It subscribes to the grid import/export topic, `<base>/claim/set` and, when they are
set, the vrms and live power topics (one topic may drive divert and the shaper both),
and publishes `amp` (mA), `pilot`, `state`, `divertmode`, `charge_rate` and
`divert_active` under its base topic, as the firmware does, so that p1evse reads it
back like a real charger. Like the firmware (`Mqtt::publishClaim`), it keeps the MQTT
claim's properties merged across `claim/set` messages and publishes them, retained, on
`<base>/claim` (`{"state":"null"}` when there is none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from p1evse.mqtt import MqttPort
from p1evse.sim.openevse import MQTT_PRIORITY, Claim, OpenEvseModel
from p1evse.sinks.charger import MILLIAMPS_PER_AMP, EvseState

_LEADING_INT = re.compile(rb"\s*[-+]?\d+")


def to_int(payload: bytes | bytearray) -> int:
    """Arduino's String::toInt(): the leading integer, 0 when there is none
    (`"1234.7"` is 1234, `"3.048"` is 3, JSON is 0)."""
    match = _LEADING_INT.match(bytes(payload))
    return int(match.group()) if match else 0


@dataclass(frozen=True, slots=True)
class ChargerTopics:
    """The charger's MQTT settings: `mqtt_grid_ie`, its base topic, `mqtt_vrms` and
    `mqtt_live_pwr` (None: not set)."""

    grid_ie: str
    base: str
    vrms: str | None = None
    live_pwr: str | None = None


class SimulatedCharger:
    def __init__(
        self,
        model: OpenEvseModel,
        broker: MqttPort,
        topics: ChargerTopics,
        clock: Callable[[], float],
        on_grid_ie: Callable[[int], None] | None = None,
    ) -> None:
        """`on_grid_ie` is told each grid value once divert has run on it."""
        self.model = model
        self._broker = broker
        self._base = topics.base
        self._clock = clock
        self._on_grid_ie = on_grid_ie
        broker.subscribe(topics.grid_ie, self.on_grid_ie)
        broker.subscribe(f"{topics.base}/claim/set", self._on_claim)
        if topics.vrms is not None:
            broker.subscribe(topics.vrms, self.on_vrms)
        if topics.live_pwr is not None and topics.live_pwr != topics.grid_ie:
            broker.subscribe(topics.live_pwr, self.on_live_pwr)
        self._shaper_on_grid_ie = topics.live_pwr == topics.grid_ie  # one topic drives both
        # the MQTT claim's properties, merged as the firmware's EvseProperties does
        self.mqtt_claim: dict[str, object] = {}
        self.claims_seen: list[str] = []  # every claim/set payload, in order
        broker.on_connected(self.report)
        broker.on_connected(self._publish_claim)

    def on_grid_ie(self, payload: bytes | bytearray) -> None:
        """A value on the grid import/export topic: divert runs."""
        watts = to_int(payload)
        self.model.grid_ie(watts, self._clock())
        if self._shaper_on_grid_ie:
            self.model.live_pwr(watts, self._clock())
        self.report()
        if self._on_grid_ie is not None:
            self._on_grid_ie(watts)

    def on_vrms(self, payload: bytes | bytearray) -> None:
        try:
            volts = float(payload)
        except ValueError:
            return
        self.model.vrms(volts, self._clock())

    def on_live_pwr(self, payload: bytes | bytearray) -> None:
        self.model.live_pwr(to_int(payload), self._clock())
        self.report()

    def tick(self) -> None:
        """The firmware's periodic work (the shaper's check of its feed)."""
        self.model.tick(self._clock())

    def _on_claim(self, payload: bytes | bytearray) -> None:
        text = bytes(payload).decode(errors="replace").strip()
        self.claims_seen.append(text)
        if text == "release":
            self.model.claim("mqtt", None)
            self.mqtt_claim = {}
        else:
            try:
                claim = json.loads(text)
            except ValueError:
                return
            if not isinstance(claim, dict):
                return
            known = ("state", "charge_current", "max_current", "auto_release")
            self.mqtt_claim |= {key: claim[key] for key in known if key in claim}
            state = self.mqtt_claim.get("state")
            if state in ("disabled", "active"):
                self.model.claim("mqtt", Claim(MQTT_PRIORITY, state == "active"))
        self._publish_claim()
        self.report()

    def _publish_claim(self) -> None:
        if self.mqtt_claim:
            claim = {"priority": MQTT_PRIORITY, **self.mqtt_claim}
            claim.setdefault("auto_release", False)
        else:
            claim = {"state": "null"}
        self._broker.publish(f"{self._base}/claim", json.dumps(claim), retain=True)

    def report(self) -> None:
        model = self.model
        amps = model.amps()
        # drawn: charging; offered but not drawn: connected; nothing offered: sleeping
        if amps > 0:
            state = EvseState.CHARGING
        else:
            state = EvseState.CONNECTED if model.pilot() > 0 else EvseState.SLEEPING
        divert = model.claims.get("divert")
        values = {
            "amp": str(round(amps * MILLIAMPS_PER_AMP)),
            "pilot": f"{model.pilot():g}",
            "state": str(state.value),
            "divertmode": "2" if model.settings.eco else "1",
            "charge_rate": f"{divert.current or 0:g}" if divert and divert.active else "0",
            "divert_active": "true" if divert is not None and divert.active else "false",
        }
        for field, value in values.items():
            self._broker.publish(f"{self._base}/{field}", value)
