"""A simulated OpenEVSE on MQTT: the divert model behind the charger's real topics.

It subscribes to the grid import/export topic and `<base>/claim/set`, and publishes
`amp` (mA), `pilot`, `state`, `divertmode`, `charge_rate` and `divert_active` under its
base topic, as the firmware does — so p1evse reads it back like a real charger.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from p1evse.mqtt import Broker
from p1evse.sim.openevse import MQTT_PRIORITY, Claim, OpenEvseModel

CHARGING, CONNECTED, SLEEPING = 3, 2, 254


class SimulatedCharger:
    def __init__(
        self,
        model: OpenEvseModel,
        broker: Broker,
        grid_ie_topic: str,
        base_topic: str,
        clock: Callable[[], float],
    ) -> None:
        self.model = model
        self._broker = broker
        self._base = base_topic
        self._clock = clock
        broker.subscribe(f"{base_topic}/claim/set", self._on_claim)
        broker.on_connected(self.report)
        self.grid_ie_topic = grid_ie_topic

    def on_grid_ie(self, payload: bytes | bytearray) -> None:
        """A value on the grid import/export topic: divert runs (OpenEVSE's toInt())."""
        try:
            watts = int(float(payload))
        except ValueError:
            watts = 0
        self.model.grid_ie(watts, self._clock())
        self.report()

    def _on_claim(self, payload: bytes | bytearray) -> None:
        text = bytes(payload).decode(errors="replace").strip()
        if text == "release":
            self.model.claim("mqtt", None)
        else:
            try:
                claim = json.loads(text)
            except ValueError:
                return
            if isinstance(claim, dict) and claim.get("state") in ("disabled", "active"):
                self.model.claim("mqtt", Claim(MQTT_PRIORITY, claim["state"] == "active"))
        self.report()

    def report(self) -> None:
        model = self.model
        amps = model.pilot_draw()
        # drawn: charging; offered but not drawn: connected; nothing offered: sleeping
        state = CHARGING if amps > 0 else CONNECTED if model.pilot() > 0 else SLEEPING
        divert = model.claims.get("divert")
        values = {
            "amp": str(round(amps * 1000)),
            "pilot": f"{model.pilot():g}",
            "state": str(state),
            "divertmode": "2" if model.settings.eco else "1",
            "charge_rate": f"{divert.current or 0:g}" if divert and divert.active else "0",
            "divert_active": "true" if divert is not None and divert.active else "false",
        }
        for field, value in values.items():
            self._broker.publish(f"{self._base}/{field}", value)
