"""`p1evse demo`: an embedded broker, a simulated meter publishing DSMR-reader's split
topics at 1 Hz, a simulated OpenEVSE in Eco mode whose car's draw the meter sees (the
closed loop), and the bridge with its status page, all in one process. It prints every
value the bridge publishes, as received back from the broker, and the car's current."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import TextIO

from p1evse.app import App, describe
from p1evse.config import MqttSettings, WebSettings, load
from p1evse.errors import ConfigError
from p1evse.model import Event, StaleEntered, StaleLeft
from p1evse.mqtt import Broker
from p1evse.sim.broker import embedded_broker
from p1evse.sim.charger import SimulatedCharger
from p1evse.sim.meter import DsmrReaderPublisher, SunnyDay
from p1evse.sim.openevse import OpenEvseModel

METER_PERIOD_S = 1.0
SIM_START_S = 9.5 * 3600  # a sunny morning: export grows as the sun climbs


async def demo(
    port: int,
    duration: float | None,
    speed: float,
    stop: asyncio.Event,
    listen: str | None = "127.0.0.1:8080",
    out: TextIO = sys.stdout,
) -> None:
    async with embedded_broker(port) as port:
        settings = load(None)
        local = {"host": "127.0.0.1", "port": port, "username": None, "password": None, "tls": None}
        settings = settings.model_copy(
            update={
                "mqtt": settings.mqtt.model_copy(update=local),
                "web": WebSettings(listen=listen),
            }
        )
        loop = asyncio.get_running_loop()
        app = App(settings, loop)
        meter_broker = Broker(
            MqttSettings(port=port, client_id="p1evse-demo-meter", availability_topic="demo/meter")
        )
        meter = DsmrReaderPublisher(meter_broker)
        day = SunnyDay()
        started = loop.time()
        last_net: list[float] = [0.0]

        def sim_time() -> float:
            return SIM_START_S + (loop.time() - started) * speed

        # the closed loop: a simulated OpenEVSE in Eco mode, its car drawing what it offers
        charger = SimulatedCharger(
            OpenEvseModel(),
            meter_broker,
            settings.openevse.grid_ie_topic,
            settings.openevse.base_topic,
            sim_time,
        )

        def show(line: str) -> None:
            clock = time.strftime("%H:%M:%S")
            sim = time.strftime("%H:%M", time.gmtime(sim_time()))
            print(f"{clock}  sim {sim}  {line}", file=out, flush=True)

        def on_output(payload: bytes | bytearray) -> None:
            charger.on_grid_ie(payload)
            show(
                f"meter {last_net[0]:+7.0f} W  ->  {settings.openevse.grid_ie_topic} "
                f"{payload.decode():>6}  ->  car {charger.model.pilot_draw():4.1f} A"
            )

        def on_event(event: Event) -> None:
            if isinstance(event, StaleEntered | StaleLeft):
                show(type(event).__name__)

        meter_broker.subscribe(settings.openevse.grid_ie_topic, on_output)
        app.bridge.observers.append(on_event)

        async def run_meter() -> None:
            while True:
                car_w = charger.model.pilot_draw() * charger.model.settings.voltage
                last_net[0] = day.net_w(sim_time()) + car_w
                meter.publish(last_net[0])
                await asyncio.sleep(METER_PERIOD_S)

        page = f"\n  status page: {app.web.url}" if app.web is not None else ""
        print(
            f"p1evse demo: broker 127.0.0.1:{port}, meter at 1 Hz, a sunny day at "
            f"{speed:g}x\n  {describe(settings)}{page}",
            file=out,
            flush=True,
        )
        if duration is not None:
            loop.call_later(duration, stop.set)
        try:
            async with asyncio.TaskGroup() as group:
                meter_conn = group.create_task(meter_broker.run(), name="demo-meter-mqtt")
                meter_task = group.create_task(run_meter(), name="demo-meter")
                await app.run(stop)
                meter_task.cancel()
                await meter_broker.close()
                meter_conn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await meter_task
        except* ConfigError as group:
            raise group.exceptions[0] from None  # e.g. the page's address is in use
