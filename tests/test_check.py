"""`p1evse check` against a real broker and a publishing meter: the same pipeline as
`run`, exit 3 when the source is not ready, and a guest that never disturbs a running
service."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from p1evse.check import EXIT_NOT_READY, _config_warnings, check
from p1evse.config import Settings, load
from p1evse.sim.broker import free_port
from tests import telegrams
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.fake_openevse import FakeOpenEvse
from tests.gateways import Gateway
from tests.probe import EVENT_TIMEOUT_S, Probe

EXAMPLES = Path(__file__).parent.parent / "examples"

DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"
STATUS = "p1evse/status"


async def run_check(
    settings: Settings, listen_s: float = 0.0, environ: Mapping[str, str] | None = None
) -> tuple[int, str]:
    out = io.StringIO()
    code = await check(settings, None, listen_s=listen_s, out=out, environ=environ or {})
    return code, out.getvalue()


@asynccontextmanager
async def meter(
    broker: BrokerProcess, messages: Sequence[tuple[str, str]], period_s: float = 0.1
) -> AsyncIterator[None]:
    """A meter publishing `messages` live, over and over, while the block runs."""
    async with Probe(broker.port) as probe:

        async def publish() -> None:
            while True:
                for topic, payload in messages:
                    probe.publish(topic, payload)
                await asyncio.sleep(period_s)  # pacing the simulated meter

        task = asyncio.create_task(publish())
        try:
            yield
        finally:
            task.cancel()


async def test_reports_topics_and_broker(broker: BrokerProcess) -> None:
    code, output = await run_check(settings_for(broker))
    assert code == 0
    assert "config: built-in defaults: valid" in output  # no environment override claimed
    assert f"broker 127.0.0.1:{broker.port}: connected (as p1evse-check-" in output
    assert f"  {DELIVERED}\n  {RETURNED}\n" in output
    assert "p1evse/grid_ie  whole watts" in output
    assert "openevse/claim/set" in output
    assert "p1evse/state  retained JSON of p1evse's state" in output
    assert "status page: off (web.listen is empty)" in output
    assert "source: not watched" in output


async def test_environment_overrides_are_named_when_there_are_some(broker: BrokerProcess) -> None:
    environ = {"P1EVSE_MQTT__PORT": str(broker.port), "P1EVSE_CONFIG": "x", "HOME": "/"}
    code, output = await run_check(settings_for(broker), environ=environ)
    assert code == 0
    assert "config: built-in defaults with P1EVSE_MQTT__PORT from the environment: valid" in output


async def test_unreachable_broker_fails() -> None:
    settings = Settings(mqtt={"port": free_port()})
    code, output = await run_check(settings)
    assert code == 1
    assert "FAILED" in output
    assert "refused" in output.lower()


async def test_ready_when_run_would_publish_sensible_values(broker: BrokerProcess) -> None:
    settings = settings_for(broker, publish={"interval": 0})
    async with meter(broker, [(DELIVERED, "0.000"), (RETURNED, "1.250")]):
        code, output = await run_check(settings, listen_s=1.0)
    assert code == 0
    assert "latest: import 0 W, export 1250 W" in output
    assert "run would publish: -1250" in output
    assert "ready: run would publish these values" in output


async def test_watts_where_kilowatts_are_configured_is_not_ready(broker: BrokerProcess) -> None:
    """The meter sends 512 (W) and check says kW: run rejects 512 kW, and so does check."""
    async with meter(broker, [(DELIVERED, "512"), (RETURNED, "0")]):
        code, output = await run_check(settings_for(broker), listen_s=1.0)
    assert code == EXIT_NOT_READY
    assert "x: implausible: import 512000.0 W\n" in output  # what was refused
    assert "latest:" not in output  # never reported as a reading
    assert "the source probably publishes W; set source.unit: W" in output
    assert "not ready: every value the source sent was rejected" in output


async def test_kilowatts_where_watts_are_configured_is_not_ready(broker: BrokerProcess) -> None:
    async with meter(broker, [(DELIVERED, "1.234"), (RETURNED, "0.000")]):
        code, output = await run_check(settings_for(broker, source={"unit": "W"}), listen_s=1.0)
    assert code == EXIT_NOT_READY
    assert "not ready: only small fractional values arrived" in output
    assert "probably publishes kW" in output


async def test_a_silent_source_is_not_ready(broker: BrokerProcess) -> None:
    async with Probe(broker.port) as probe:
        await probe.subscribe(DELIVERED)
        probe.publish(DELIVERED, "0.500", retain=True)  # an old value is no sign of life
        await probe.next(DELIVERED)  # retained by the broker before check subscribes
        code, output = await run_check(settings_for(broker), listen_s=0.5)
    assert code == EXIT_NOT_READY
    assert "not ready: no data from the source" in output


async def test_stale_after_shorter_than_three_source_periods(broker: BrokerProcess) -> None:
    settings = settings_for(broker, publish={"stale_after": 0.5, "pair_window": 0.05})
    async with meter(broker, [(DELIVERED, "1.000")], period_s=0.2):
        code, output = await run_check(settings, listen_s=1.5)
    assert code == 0  # a warning: run would publish
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


def test_steady_s_settings_without_mode_steady_are_warned_about() -> None:
    def warned(**publish: object) -> str:
        return "\n".join(_config_warnings(Settings(publish=publish)))

    assert (
        "publish.band_w set, but publish.mode is interval: it takes effect with mode steady only"
        in warned(band_w=50)
    )
    assert "publish.band_w and publish.step_w set" in warned(step_w=600, band_w=50)
    assert "publish.band_w" not in warned(mode="steady", band_w=50)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"publish": {"interval": 0.1}}, "a value less than 1 s after the one before"),
        (  # told beside the other: it hung off the step_w warning's elif
            {"publish": {"interval": 0.5, "step_w": 600}},
            "a value less than 1 s after the one before",
        ),
        (
            {"publish": {"on_stale": "import", "failsafe_import_w": 0}},
            "publish.failsafe_import_w 0 W: less than a car draws at 6 A (1380 W)",
        ),
        (
            {"source": {"type": "homewizard", "host": "hw", "interval": 15}},
            "publish.stale_after 30 s is less than three of source.interval (15 s)",
        ),
        (
            {"source": {"type": "mqtt_value", "topic": "p"}, "openevse": {"voltage": True}},
            "the mqtt_value source brings no voltage: nothing is sent",
        ),
        (
            {"openevse": {"voltage": True}},
            "the mqtt_split source brings no voltage (set source.phase_voltage_topics)",
        ),
    ],
)
def test_settings_that_defeat_themselves_are_warned_about(
    settings: dict[str, Any], fragment: str
) -> None:
    """Each was accepted with "no warnings" (a fail-safe of 0 W leaves the car charging
    at its last rate, as on_stale none does)."""
    assert fragment in "\n".join(_config_warnings(Settings(**settings)))


def test_a_fail_safe_import_that_stops_the_car_is_not_warned_about() -> None:
    settings = Settings(publish={"on_stale": "import", "failsafe_import_w": 2000})
    assert _config_warnings(settings) == []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_check_finds_nothing_to_warn_of_in_the_examples(path: Path) -> None:
    assert _config_warnings(load(path)) == []


def test_web_reachable_from_the_network_without_a_token_is_warned_about() -> None:
    exposed = Settings(web={"listen": "0.0.0.0:8080"})
    assert "reachable from the network without a token" in "\n".join(_config_warnings(exposed))
    with_token = Settings(web={"listen": "0.0.0.0:8080", "token": "t0ken-0123456789ab"})
    assert _config_warnings(with_token) == []
    assert _config_warnings(Settings(web={"listen": "[::1]:8080"})) == []


def test_no_password_warning_on_loopback() -> None:
    settings = Settings(mqtt={"username": "u", "password": "pw"})
    assert _config_warnings(settings) == []


async def check_a_gateway(
    broker: BrokerProcess, meter: Callable[[asyncio.StreamWriter], Awaitable[None]]
) -> tuple[int, str, str]:
    """`check` of a p1 source on a TCP gateway whose connection `meter` writes to: the
    exit code, the output and the gateway's url."""
    gateway = Gateway()
    await gateway.start()
    settings = settings_for(broker, source={"type": "p1", "url": gateway.url})

    async def send() -> None:
        await meter(await gateway.connection())

    meter_task = asyncio.create_task(send())
    try:
        code, output = await run_check(settings, listen_s=1.0)
    finally:
        meter_task.cancel()
        await gateway.stop()
    return code, output, gateway.url


async def test_check_watches_a_p1_gateway(broker: BrokerProcess) -> None:
    async def dsmr5_meter(connection: asyncio.StreamWriter) -> None:
        for second in range(50):
            clock = telegrams.meter_clock(second)
            connection.write(telegrams.dsmr5(import_w=0, export_w=1500, clock=clock))
            await asyncio.sleep(0.1)  # pacing a 10 Hz meter

    code, output, url = await check_a_gateway(broker, dsmr5_meter)
    assert code == 0
    assert f"p1 {url} (DSMR 5)" in output
    assert "subscribes to: nothing (the source is not MQTT)" in output
    assert "latest: import 0 W, export 1500 W" in output
    assert "voltage per phase: 230 V / 230 V / 229 V" in output
    assert "meter clock: 2017-01-02T18:2" in output
    assert "the meter's clock is" in output  # years behind this machine's: said, not refused
    assert "0 rejected" in output


async def test_check_of_a_p1_gateway_that_sends_bytes_but_no_telegram(
    broker: BrokerProcess,
) -> None:
    async def dsmr4_meter_read_at_8n1(connection: asyncio.StreamWriter) -> None:
        connection.write(telegrams.read_at_8n1(telegrams.dsmr4()) * 3)

    code, output, _ = await check_a_gateway(broker, dsmr4_meter_read_at_8n1)
    assert code == EXIT_NOT_READY
    assert "not ready: no data from the source" not in output
    assert re.search(r"not ready: \d+ bytes arrived in 1 s but not one telegram", output)
    assert "the gateway's serial settings" in output


async def test_check_says_why_the_meter_port_would_not_open(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    missing = tmp_path / "ttyUSB9"
    settings = settings_for(broker, source={"type": "p1", "url": str(missing)})
    code, output = await run_check(settings, listen_s=0.5)
    assert code == EXIT_NOT_READY
    assert f"source said: p1: cannot open {missing}: " in output
    assert f"not ready: no data from the source within 0.5 s: p1: cannot open {missing}" in output
    assert logging.getLogger("p1evse.sources").propagate  # as it was


async def test_check_with_a_signed_value_source(broker: BrokerProcess) -> None:
    source = {"type": "mqtt_value", "topic": "home/grid/power", "unit": "kW"}
    async with meter(broker, [("home/grid/power", "-1.5")]):
        code, output = await run_check(settings_for(broker, source=source), listen_s=0.5)
    assert code == 0
    assert "  home/grid/power\n" in output
    assert "latest: import 0 W, export 1500 W" in output


async def test_reports_the_charger_read_back_over_mqtt(broker: BrokerProcess) -> None:
    async with Probe(broker.port) as probe:
        probe.publish("openevse/divertmode", "1", retain=True)  # OpenEVSE retains its state
        probe.publish("openevse/amp", "6000", retain=True)
        code, output = await run_check(settings_for(broker), listen_s=0.5)
    assert code == EXIT_NOT_READY  # no meter here
    assert "charger: divert mode normal, state None, car draws 6 A" in output
    assert "OpenEVSE is in normal mode" in output


async def test_a_silent_charger_is_a_warning(broker: BrokerProcess) -> None:
    async with meter(broker, [(DELIVERED, "0.300"), (RETURNED, "0.000")]):
        code, output = await run_check(settings_for(broker), listen_s=0.5)
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
    assert code == EXIT_NOT_READY  # no meter here
    assert f"→ {charger.url}/status every 5 s" in output  # where the values go
    assert "charger: divert mode eco, state 1, car draws 0 A" in output
    assert f"charger {charger.url}: divert type grid (import/export)" in output
    assert "warning: OpenEVSE" not in output


async def test_a_charger_over_http_that_does_not_answer_is_not_ready(
    broker: BrokerProcess,
) -> None:
    """Over HTTP the charger is where every value goes; check said "ready" without it."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    settings = settings_for(
        broker, publish={"interval": 0}, openevse={"transport": "http", "url": url}
    )
    async with meter(broker, [(DELIVERED, "0.000"), (RETURNED, "1.250")]):
        code, output = await run_check(settings, listen_s=1.0)
    assert code == EXIT_NOT_READY
    assert f"charger {url}: FAILED: " in output
    assert "not ready: the values go to the charger over HTTP, and " in output
    assert "ready: run would publish" not in output


async def test_check_alone_publishes_nothing(one_broker: BrokerProcess) -> None:
    settings = settings_for(one_broker, homeassistant={"discovery": True})
    async with Probe(one_broker.port) as watcher:
        await watcher.subscribe("#")
        await run_check(settings, listen_s=0.3)
        watcher.publish("test/end", "end")  # after anything check published
        heard: set[str] = set()
        while (message := await watcher.next("#", EVENT_TIMEOUT_S)).topic != "test/end":
            heard.add(message.topic)
    assert heard == set()


async def test_check_beside_a_running_service_disturbs_nothing(one_broker: BrokerProcess) -> None:
    """Its own client id (the service is never kicked off the broker), no availability
    message or will of its own, nothing left retained; and it hears the meter too."""
    settings = settings_for(one_broker, publish={"interval": 0})
    async with running(settings) as app, Probe(one_broker.port) as watcher:
        await watcher.subscribe(STATUS)
        await watcher.wait_for_payload(STATUS, "online")
        await watcher.subscribe("#")
        async with meter(one_broker, [(DELIVERED, "0.400"), (RETURNED, "0.000")]):
            code, output = await run_check(settings, listen_s=1.0)
        assert code == 0, output
        assert "run would publish: 400" in output
        assert app.broker.stats.drops == 0  # never kicked off
        assert app.broker.connected
        assert "offline" not in watcher.pending(STATUS)
    async with Probe(one_broker.port) as fresh:
        await fresh.subscribe("#")
        fresh.publish("test/end", "end")  # the broker sends it after every retained one
        retained: set[str] = set()
        while (message := await fresh.next("#", EVENT_TIMEOUT_S)).topic != "test/end":
            retained.add(message.topic)
    assert retained == {STATUS, "p1evse/state"}  # the service's own, nothing of check's


async def test_a_fleet_is_checked_on_its_first_site_and_its_site_ids_counted(
    broker: BrokerProcess,
) -> None:
    settings = settings_for(
        broker,
        source={
            "delivered_topic": "dsmr/+/reading/electricity_currently_delivered",
            "returned_topic": "dsmr/+/reading/electricity_currently_returned",
        },
        openevse={"grid_ie_topic": "p1evse/{site}/grid_ie", "base_topic": "openevse/{site}"},
        mqtt={"state_topic": None},
        publish={"interval": 0, "on_stale": "none"},
    )
    homes = [
        (f"dsmr/{home}/reading/electricity_currently_delivered", "0.500")
        for home in ("h1", "h2", "h3")
    ]
    async with meter(
        broker, [*homes, ("dsmr/bad id/reading/electricity_currently_delivered", "1")]
    ):
        code, output = await run_check(settings, listen_s=1.0)
    assert code == 0, output
    assert "fleet: watching site h" in output
    heard = re.search(r"fleet: 3 site ids heard in (\d+) s: h", output)
    assert heard is not None, output
    assert int(heard[1]) >= 1  # the time it listened: to the first site, then 1 s on it
    assert "refused (no site id: " in output
    assert "run would publish: 500" in output
    assert "p1evse/{site}/grid_ie" in output


def value_fleet(broker: BrokerProcess, **sections: dict[str, Any]) -> Settings:
    """A fleet of single-topic meters, `meters/<site>/power`."""
    return settings_for(
        broker,
        source={"type": "mqtt_value", "topic": "meters/+/power"},
        openevse={"grid_ie_topic": "p1evse/{site}/grid_ie", "base_topic": "openevse/{site}"},
        mqtt={"state_topic": None, **sections.pop("mqtt", {})},
        publish={"on_stale": "none"},
        **sections,
    )


async def test_a_silent_fleet_is_not_ready(broker: BrokerProcess) -> None:
    settings = value_fleet(broker)
    code, output = await run_check(settings, listen_s=0.5)
    assert code == EXIT_NOT_READY
    assert "not ready: no site sent anything on the source's topics within 0.5 s" in output


async def test_a_shared_groups_process_is_described_as_it_subscribes_and_announces(
    one_broker: BrokerProcess,
) -> None:
    settings = value_fleet(
        one_broker,
        mqtt={"client_id": "p1evse-a"},
        fleet={"share_group": "homes", "share_sticky": True},
    )
    _, output = await run_check(settings, listen_s=0.1)
    lines = [line.strip() for line in output.splitlines()]
    assert "$share/homes/meters/+/power" in lines
    assert "p1evse/+/grid_ie  every charger's feed, heard back: who else feeds it" in lines
    assert "p1evse/fleet/processes/p1evse-a  online / offline, retained" in lines
    assert "the meters dealt by the broker to the group homes" in output
