"""`p1evse demo`: the closed loop on one machine. An embedded broker; a simulated house
with PV whose DSMR 5 meter reads once a second, published as DSMR-reader's split topics
(per phase too) or, with `meter="p1"`, served as P1 telegrams by a loopback TCP gateway
to the `p1` source; a simulated OpenEVSE in Eco mode on its real MQTT interface, fed
with the grid value and the meter's voltage, whose car's draw the meter sees; and the
bridge with its status page. It prints every value the bridge publishes, as received
back from the broker, and the car's current."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from typing import Literal, TextIO

from p1evse.app import App, describe
from p1evse.config import Settings, load
from p1evse.model import Event, StaleEntered, StaleLeft
from p1evse.mqtt import Broker, MqttSettings
from p1evse.sim.broker import embedded_broker
from p1evse.sim.charger import ChargerTopics, SimulatedCharger
from p1evse.sim.house import House, HouseSettings, SyntheticDay
from p1evse.sim.meter import (
    PHASE_DELIVERED_TOPICS,
    PHASE_RETURNED_TOPICS,
    PHASE_VOLTAGE_TOPICS,
    DsmrReaderPublisher,
    TelegramServer,
    dsmr5_telegram,
)
from p1evse.sim.openevse import OpenEvseModel
from p1evse.sources.mqtt_split import MqttSplitSettings
from p1evse.sources.p1 import P1Settings
from p1evse.web.settings import WebSettings

METER_PERIOD_S = 1.0
SIM_START_S = 9.5 * 3600  # a sunny morning: export grows as the sun climbs
MeterKind = Literal["split", "p1"]


def demo_settings(
    broker_port: int, listen: str | None, meter: MeterKind, gateway_port: int
) -> Settings:
    """p1evse's defaults, on the embedded broker, reading the simulated meter, and
    feeding the meter's voltage to the charger."""
    settings = load(None)
    local = {
        "host": "127.0.0.1",
        "port": broker_port,
        "username": None,
        "password": None,
        "tls": None,
    }
    if meter == "p1":
        source: MqttSplitSettings | P1Settings = P1Settings(url=f"tcp://127.0.0.1:{gateway_port}")
    else:
        source = MqttSplitSettings(
            phase_delivered_topics=PHASE_DELIVERED_TOPICS,
            phase_returned_topics=PHASE_RETURNED_TOPICS,
            phase_voltage_topics=PHASE_VOLTAGE_TOPICS,
        )
    return settings.model_copy(
        update={
            "mqtt": settings.mqtt.model_copy(update=local),
            "source": source,
            "openevse": settings.openevse.model_copy(update={"voltage": True}),
            "web": WebSettings(listen=listen),
        }
    )


async def demo(
    port: int,
    duration: float | None,
    speed: float,
    stop: asyncio.Event,
    listen: str | None = "127.0.0.1:8080",
    out: TextIO = sys.stdout,
    meter: MeterKind = "split",
) -> None:
    gateway = TelegramServer()
    async with embedded_broker(port) as port, contextlib.AsyncExitStack() as stack:
        if meter == "p1":
            await gateway.start()
            stack.push_async_callback(gateway.close)
        wanted = listen
        if listen is not None:
            listen = with_a_free_port(listen)
        settings = demo_settings(port, listen, meter, gateway.port)
        loop = asyncio.get_running_loop()
        link = Broker(
            MqttSettings(port=port, client_id="p1evse-demo-sim", availability_topic="demo/sim")
        )
        publisher = DsmrReaderPublisher(link)
        house = House(SyntheticDay(), HouseSettings(voltage_v=230.0))
        started = loop.time()
        last_net = [0.0]

        def sim_time() -> float:
            return SIM_START_S + (loop.time() - started) * speed

        def sim_clock() -> str:
            return time.strftime("%H:%M", time.gmtime(sim_time()))

        def show(line: str) -> None:
            clock = time.strftime("%H:%M:%S")
            sim = sim_clock()
            print(f"{clock}  sim {sim}  {line}", file=out, flush=True)

        openevse = settings.openevse

        def on_grid_ie(watts: int) -> None:
            show(
                f"meter {last_net[0]:+7.0f} W  ->  {openevse.grid_ie_topic} "
                f"{watts:>6}  ->  car {charger.model.amps():4.1f} A"
            )

        # the closed loop: a simulated OpenEVSE in Eco mode, its car drawing what it offers
        charger = SimulatedCharger(
            OpenEvseModel(),
            link,
            ChargerTopics(openevse.grid_ie_topic, openevse.base_topic, vrms=openevse.vrms_topic),
            sim_time,
            on_grid_ie,
        )

        def on_event(event: Event) -> None:
            if isinstance(event, StaleEntered | StaleLeft):
                show(type(event).__name__)

        app = App(settings, loop, observers=[on_event])
        if app.site.state is not None:  # the page shows the simulated time of day
            app.site.state.sim_clock = sim_clock

        async def run_meter() -> None:
            while True:
                metered = house.read(sim_time(), charger.model.amps())
                last_net[0] = metered.reading.net_w
                if meter == "p1":
                    gateway.send(dsmr5_telegram(metered))
                else:
                    publisher.publish(metered.reading)
                charger.tick()
                await asyncio.sleep(METER_PERIOD_S)

        async def show_page() -> None:
            """Its address once it is served: one that answers."""
            if app.web is None:
                return
            await app.web.listening.wait()
            moved = f"  ({wanted} is in use)" if listen != wanted else ""
            print(f"  status page: {app.web.url}{moved}", file=out, flush=True)

        print(
            f"p1evse demo: broker 127.0.0.1:{port}, a DSMR 5 meter once a second, "
            f"a sunny day at {speed:g}x\n  {describe(settings)}",
            file=out,
            flush=True,
        )
        if duration is not None:
            loop.call_later(duration, stop.set)
        async with asyncio.TaskGroup() as group:
            link_task = group.create_task(link.run(), name="demo-sim-mqtt")
            meter_task = group.create_task(run_meter(), name="demo-meter")
            page_task = group.create_task(show_page(), name="demo-page")
            await app.run(stop)
            meter_task.cancel()
            page_task.cancel()
            await link.close()
            link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await meter_task


def with_a_free_port(listen: str) -> str:
    """`listen`, or its host with a free port when another program holds that port: the
    demo should just work, and it prints where its page went."""
    page = WebSettings(listen=listen).address
    if page is None:
        return listen  # blank: the page is off
    try:
        [(family, kind, _, _, address), *_] = socket.getaddrinfo(
            page.host, page.port, type=socket.SOCK_STREAM
        )
    except OSError:
        return listen  # a name that does not resolve: the page says so, and retries
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the page binds
        try:
            probe.bind(address)
            return listen
        except OSError:
            probe.bind((address[0], 0, *address[2:]))
            port: int = probe.getsockname()[1]
    return f"{listen.rpartition(':')[0]}:{port}"
