"""`p1evse check` against a real broker and a publishing meter."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from p1evse.check import _config_warnings, check
from p1evse.config import Settings
from p1evse.sim.broker import free_port
from tests import telegrams
from tests.brokers import BrokerProcess
from tests.conftest import settings_for
from tests.fake_openevse import FakeOpenEvse
from tests.gateways import Gateway
from tests.probe import Probe

DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"


async def run_check(settings: Settings, listen_s: float = 0.0) -> tuple[int, str]:
    out = io.StringIO()
    code = await check(settings, None, listen_s=listen_s, out=out)
    return code, out.getvalue()


async def test_reports_topics_and_broker(broker: BrokerProcess) -> None:
    code, output = await run_check(settings_for(broker))
    assert code == 0
    assert f"broker 127.0.0.1:{broker.port}: connected" in output
    assert f"  {DELIVERED}\n  {RETURNED}\n" in output
    assert "p1evse/grid_ie  whole watts" in output
    assert "openevse/claim/set" in output
    assert "status page: off (web.listen is empty)" in output


async def test_unreachable_broker_fails() -> None:
    settings = Settings(mqtt={"port": free_port()})
    code, output = await run_check(settings)
    assert code == 1
    assert "FAILED" in output
    assert "refused" in output.lower()


async def test_watts_published_where_kilowatts_are_configured(broker: BrokerProcess) -> None:
    async with Probe(broker.port) as probe:
        probe.publish(DELIVERED, "1234", retain=True)  # DSMR-reader retains its values
        probe.publish(RETURNED, "0", retain=True)
        code, output = await run_check(settings_for(broker), listen_s=0.5)
    assert code == 0
    assert "source probably publishes W; set source.unit: W" in output


async def test_kilowatts_published_where_watts_are_configured(broker: BrokerProcess) -> None:
    async with Probe(broker.port) as probe:
        probe.publish(DELIVERED, "1.234", retain=True)
        code, output = await run_check(settings_for(broker, source={"unit": "W"}), listen_s=0.5)
    assert code == 0
    assert "probably publishes kW" in output


async def test_silent_source_is_reported(broker: BrokerProcess) -> None:
    code, output = await run_check(settings_for(broker), listen_s=0.3)
    assert code == 0
    assert "no data from the source" in output


async def test_stale_after_shorter_than_three_source_periods(broker: BrokerProcess) -> None:
    publish: dict[str, Any] = {"stale_after": 0.5, "pair_window": 0.05}
    settings = settings_for(broker, publish=publish)
    async with Probe(broker.port) as probe:

        async def meter() -> None:
            for i in range(40):
                probe.publish(DELIVERED, f"{1 + i / 1000:.3f}")
                await asyncio.sleep(0.2)  # pacing a 5 Hz meter

        meter_task = asyncio.create_task(meter())
        code, output = await run_check(settings, listen_s=1.5)
        meter_task.cancel()
    assert code == 0
    assert "about one reading every 0.2 s" in output
    assert "stale_after 0.5 s is shorter than 3 source periods" in output


def test_config_warnings() -> None:
    # only the configuration is looked at: nothing connects to the documentation address
    settings = Settings(
        mqtt={"host": "mqtt.example.invalid", "username": "u", "password": "secret-pw"},
        publish={"interval": 0, "on_stale": "none"},
    )
    warnings = "\n".join(_config_warnings(settings))
    assert "interval is 0" in warnings
    assert "on_stale is none" in warnings
    assert "crosses the network to mqtt.example.invalid unencrypted" in warnings
    assert "secret-pw" not in warnings


def test_web_reachable_from_the_network_without_a_token_is_warned_about() -> None:
    exposed = Settings(web={"listen": "0.0.0.0:8080"})
    assert "reachable from the network without a token" in "\n".join(_config_warnings(exposed))
    with_token = Settings(web={"listen": "0.0.0.0:8080", "token": "t0ken-0123456789ab"})
    assert _config_warnings(with_token) == []
    assert _config_warnings(Settings(web={"listen": "[::1]:8080"})) == []


def test_no_password_warning_on_loopback() -> None:
    settings = Settings(mqtt={"username": "u", "password": "pw"})
    assert _config_warnings(settings) == []


async def test_check_watches_a_p1_gateway(broker: BrokerProcess) -> None:
    gateway = Gateway()
    await gateway.start()
    settings = settings_for(broker, source={"type": "p1", "url": gateway.url})

    async def meter() -> None:
        connection = await gateway.connection()
        for _ in range(50):
            connection.write(telegrams.dsmr5(import_w=0, export_w=1500))
            await asyncio.sleep(0.1)  # pacing a 10 Hz meter

    meter_task = asyncio.create_task(meter())
    try:
        code, output = await run_check(settings, listen_s=1.0)
    finally:
        meter_task.cancel()
        await gateway.stop()
    assert code == 0
    assert f"p1 {gateway.url} (DSMR 5)" in output
    assert "subscribes to: nothing (the source is not MQTT)" in output
    assert "latest export: 1500 W" in output
    assert "voltage per phase: 230 V / 230 V / 229 V" in output
    assert "meter clock: 2017-01-02T18:20:02+00:00" in output
    assert "0 rejected" in output


async def test_check_with_a_signed_value_source(broker: BrokerProcess) -> None:
    source = {"type": "mqtt_value", "topic": "home/grid/power", "unit": "kW"}
    async with Probe(broker.port) as probe:
        probe.publish("home/grid/power", "-1.5", retain=True)
        code, output = await run_check(settings_for(broker, source=source), listen_s=0.5)
    assert code == 0
    assert "  home/grid/power\n" in output
    assert "latest export: 1500 W" in output


async def test_reports_the_charger_read_back_over_mqtt(broker: BrokerProcess) -> None:
    async with Probe(broker.port) as probe:
        probe.publish("openevse/divertmode", "1", retain=True)
        probe.publish("openevse/amp", "6000", retain=True)
        code, output = await run_check(settings_for(broker), listen_s=0.5)
    assert code == 0
    assert "charger: divert mode normal, state None, car draws 6 A" in output
    assert "OpenEVSE is in normal mode" in output


async def test_a_silent_charger_is_reported(broker: BrokerProcess) -> None:
    code, output = await run_check(settings_for(broker), listen_s=0.3)
    assert code == 0  # a warning, not a failure: the charger may be off
    assert "nothing from OpenEVSE on openevse/…" in output


async def test_reads_the_chargers_divert_settings_over_http(broker: BrokerProcess) -> None:
    async with FakeOpenEvse() as charger:
        charger.config.update(divert_type=0, mqtt_grid_ie="emon/emonpi/power1")
        settings = settings_for(broker, openevse={"url": charger.url})
        code, output = await run_check(settings)
    assert code == 0
    assert f"charger {charger.url}: divert type solar (PV production)" in output
    assert "set its divert type to grid" in output
    assert "OpenEVSE reads grid import/export from 'emon/emonpi/power1'" in output


async def test_http_transport_reports_the_charger(broker: BrokerProcess) -> None:
    async with FakeOpenEvse() as charger:
        settings = settings_for(broker, openevse={"transport": "http", "url": charger.url})
        code, output = await run_check(settings, listen_s=0.3)
    assert code == 0
    assert "charger: divert mode eco, state 1, car draws 0 A" in output
    assert f"charger {charger.url}: divert type grid (import/export)" in output
    assert "warning: OpenEVSE" not in output
