"""Logins and TLS against a real mosquitto configured for them."""

from __future__ import annotations

import io
import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from p1evse.check import check
from p1evse.mqtt import Broker, BrokerRefused, BrokerUnavailable, MqttSettings
from p1evse.sources.homewizard import HomeWizardSettings
from tests.brokers import BrokerProcess, mosquitto_available
from tests.conftest import require, running, settings_for
from tests.pki import Pki, make_ca
from tests.probe import Probe


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    """Login and TLS are tested on mosquitto (amqtt's are not what users run)."""
    require("mosquitto", mosquitto_available())


USER, PASSWORD = "evse", "c0rrect-h0rse"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), USER, PASSWORD], check=True)
    return path


@pytest.fixture
def locked_broker(tmp_path: Path, password_file: Path) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(
        "mosquitto", tmp_path, f"allow_anonymous false\npassword_file {password_file}\n"
    )
    broker.start()
    yield broker
    broker.stop()


async def test_login_with_the_right_password(
    locked_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mqtt = {"username": USER, "password": PASSWORD}
    settings = settings_for(locked_broker, mqtt=mqtt, publish={"interval": 0})
    async with (
        running(settings),
        Probe(locked_broker.port, username=USER, password=PASSWORD) as probe,
    ):
        await probe.subscribe("p1evse/grid_ie", "p1evse/status")
        await probe.wait_for_payload("p1evse/status", "online")
        probe.publish("dsmr/reading/electricity_currently_delivered", "0.042")
        assert await probe.next_payload("p1evse/grid_ie") == "42"
    assert PASSWORD not in caplog.text


async def test_a_wrong_password_is_a_clear_error(
    locked_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Broker(MqttSettings(port=locked_broker.port, username=USER, password="wrong-pw"))
    with pytest.raises(BrokerRefused) as refused:
        await broker.connect_once()
    message = str(refused.value)
    assert f"refused the login as {USER!r}" in message
    assert "check mqtt.username and mqtt.password" in message
    assert "wrong-pw" not in message + caplog.text


# -- TLS ---------------------------------------------------------------------------


@contextmanager
def tls_mosquitto(pki: Pki, server_names: tuple[str, ...], extra: str = "") -> Iterator[int]:
    cert_file, key_file = pki.issue("server", server_names)
    broker = BrokerProcess(
        "mosquitto",
        pki.directory,
        f"cafile {pki.ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\n"
        f"allow_anonymous true\n{extra}",
    )
    broker.start()
    try:
        yield broker.port
    finally:
        broker.stop()


async def connects(**mqtt: Any) -> bool:
    broker = Broker(MqttSettings(**mqtt))
    await broker.connect_once(timeout=2)
    connected = broker.connected
    await broker.close()
    return connected


async def test_tls_with_the_right_ca(pki: Pki) -> None:
    with tls_mosquitto(pki, ("127.0.0.1",)) as port:
        assert await connects(port=port, tls={"ca_file": pki.ca_file})


async def test_tls_refuses_a_server_signed_by_another_ca(pki: Pki, tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, "other-ca")
    refused = pytest.raises(BrokerUnavailable, match="TLS failed: CERTIFICATE_VERIFY_FAILED")
    with tls_mosquitto(pki, ("127.0.0.1",)) as port, refused:
        await connects(port=port, tls={"ca_file": other_ca})


async def test_tls_checks_the_server_name_unless_insecure(pki: Pki) -> None:
    with tls_mosquitto(pki, ("mqtt.example.invalid",)) as port:
        with pytest.raises(BrokerUnavailable, match="TLS failed"):
            await connects(port=port, tls={"ca_file": pki.ca_file})
        assert await connects(port=port, tls={"ca_file": pki.ca_file, "insecure": True})


async def test_tls_client_certificate(pki: Pki) -> None:
    cert_file, key_file = pki.issue("p1evse-client")
    with tls_mosquitto(pki, ("127.0.0.1",), "require_certificate true\n") as port:
        with pytest.raises(BrokerUnavailable):
            await connects(port=port, tls={"ca_file": pki.ca_file})
        tls = {"ca_file": pki.ca_file, "cert_file": cert_file, "key_file": key_file}
        assert await connects(port=port, tls=tls)


def test_tls_files_that_are_no_certificate_or_key_are_a_config_error(
    pki: Pki, tmp_path: Path
) -> None:
    """Said when the settings are read, naming the key, not as a traceback at connect."""
    text = tmp_path / "hostname"
    text.write_text("nas\n")
    cert_file, key_file = pki.issue("p1evse-client")
    _, other_key = pki.issue("someone-else")
    with pytest.raises(ValidationError, match=f"ca_file: {text}: no PEM certificate in it"):
        MqttSettings(tls={"ca_file": text})
    with pytest.raises(ValidationError, match="not a PEM certificate and its private key"):
        MqttSettings(tls={"cert_file": cert_file, "key_file": text})
    with pytest.raises(ValidationError, match="not a PEM certificate and its private key"):
        MqttSettings(tls={"cert_file": cert_file, "key_file": other_key})
    with pytest.raises(ValidationError, match=f"ca_file: {text}: no PEM certificate in it"):
        HomeWizardSettings(host="127.0.0.1", api=2, token="AB" * 16, ca_file=text)
    MqttSettings(tls={"ca_file": pki.ca_file, "cert_file": cert_file, "key_file": key_file})


async def test_plain_tcp_to_a_tls_listener_fails(pki: Pki) -> None:
    with tls_mosquitto(pki, ("127.0.0.1",)) as port, pytest.raises(BrokerUnavailable):
        await connects(port=port)


@pytest.mark.parametrize("password", [PASSWORD, "wrong-pw"])
async def test_check_never_shows_the_password(locked_broker: BrokerProcess, password: str) -> None:
    out = io.StringIO()
    settings = settings_for(locked_broker, mqtt={"username": USER, "password": password})
    code = await check(settings, None, listen_s=0, out=out)
    assert password not in out.getvalue()
    if password == PASSWORD:
        assert code == 0
    else:
        assert code == 1
        assert f"refused the login as {USER!r}" in out.getvalue()
