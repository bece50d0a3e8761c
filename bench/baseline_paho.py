"""The naive relay that p1evse replaces: bench/relay.py's baseline subject.

Plain paho-mqtt (v2 callback API) on `loop_forever()`: every DSMR-reader reading in kW is
republished at once as integer watts on `p1evse/grid_ie`, + import / - export. No pairing,
no averaging, no stale guard, no validation: the original 40-line script's behaviour.
It imports nothing but paho, so its CPU time and memory are the floor to compare with.

    python bench/baseline_paho.py [HOST] [PORT]
"""

from __future__ import annotations

import sys
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"
GRID_IE = "p1evse/grid_ie"


def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
    client.subscribe([(DELIVERED, 0), (RETURNED, 0)])


def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
    watts = round(float(message.payload) * 1000)
    if message.topic == RETURNED:
        watts = -watts
    client.publish(GRID_IE, str(watts))


def main() -> None:
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 1883
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, port)
    client.loop_forever()


if __name__ == "__main__":
    main()
