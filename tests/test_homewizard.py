"""The HomeWizard source against a local HTTP(S) server that answers like the P1 meter:
API v1 over HTTP, API v2 over HTTPS with a token and a certificate from a private CA."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.backoff import Backoff
from p1evse.errors import InputRejected
from p1evse.model import Rejection
from p1evse.sim.broker import free_port
from p1evse.sources.homewizard import HomeWizardSettings, HomeWizardSource, measurement
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.intakes import PipelineIntake, RecordingIntake
from tests.payloads import assert_plausible, json_documents
from tests.pki import Pki
from tests.probe import Probe

TOKEN = "0123456789ABCDEF0123456789ABCDEF"

V1_DATA: dict[str, Any] = {
    "wifi_ssid": "My Wi-Fi",
    "wifi_strength": 100,
    "smr_version": 50,
    "meter_model": "ISKRA  2M550T-101",
    "unique_id": "00112233445566778899AABBCCDDEEFF",
    "active_tariff": 2,
    "total_power_import_kwh": 13779.338,
    "total_power_import_t1_kwh": 10830.511,
    "total_power_import_t2_kwh": 2948.827,
    "total_power_export_kwh": 0,
    "active_power_w": -543,
    "active_power_l1_w": -676,
    "active_power_l2_w": 133,
    "active_power_l3_w": 0,
    "active_current_l1_a": -4,
    "active_current_l2_a": 2,
    "active_current_l3_a": 0,
    "active_voltage_l1_v": 230.111,
    "active_voltage_l2_v": 229.1,
    "active_voltage_l3_v": 230.3,
    "voltage_sag_l1_count": 1,
    "any_power_fail_count": 4,
    "long_power_fail_count": 5,
    "total_gas_m3": 2569.646,
    "gas_timestamp": 210606140010,
    "external": [],
}

V2_MEASUREMENT: dict[str, Any] = {
    "protocol_version": 50,
    "meter_model": "ISKRA 2M550T-101",
    "unique_id": "4E6A4D4B4C",
    "timestamp": "2024-06-28T14:12:34",
    "tariff": 2,
    "energy_import_kwh": 13779.338,
    "energy_export_kwh": 1234.5,
    "power_w": 1210,
    "power_l1_w": 1000,
    "power_l2_w": 300,
    "power_l3_w": -90,
    "voltage_l1_v": 230.1,
    "voltage_l2_v": 229.1,
    "voltage_l3_v": 230.3,
    "current_a": 6.5,
    "any_power_fail_count": 4,
    "average_power_15m_w": 123.0,
    "external": [],
}


class Device:
    """A HomeWizard P1 meter's HTTP API; the test sets how it answers."""

    def __init__(self, api: int = 1) -> None:
        self.api = api
        self.document: Any = V1_DATA if api == 1 else V2_MEASUREMENT
        self.statuses: list[int] = []  # answered first, one per request, then 200
        self.stall: asyncio.Event | None = None  # while set to an unset event: no answer
        self.delay_s = 0.0  # answer this much later (a slow device)
        self.redirect_to: str | None = None  # answer every request with a 302 to there
        self.requests: list[web.Request] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/data" if self.api == 1 else "/api/measurement", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.stall is not None:
            await self.stall.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the device is slow: pacing its answer
        if self.api == 2 and (
            request.headers.get("Authorization") != f"Bearer {TOKEN}"
            or request.headers.get("X-Api-Version") != "2"
        ):
            return web.json_response({"error": "user:unauthorized"}, status=401)
        if self.statuses:
            return web.Response(status=self.statuses.pop(0), text="oops")
        if self.redirect_to is not None:
            raise web.HTTPFound(self.redirect_to)
        return web.Response(body=json.dumps(self.document), content_type="application/json")


@contextlib.asynccontextmanager
async def polling(
    device: Device, **overrides: Any
) -> AsyncIterator[tuple[HomeWizardSource, RecordingIntake]]:
    """The source polling `device` every 50 ms (faster than settings allow, to test
    quickly), retrying after 10-50 ms."""
    fields = {"host": "127.0.0.1", "port": device.port, "api": device.api, **overrides}
    homewizard = HomeWizardSettings(**fields).model_copy(update={"interval": 0.05})
    source = HomeWizardSource(homewizard, None, Backoff(initial=0.01, cap=0.05))
    intake = RecordingIntake()
    task = asyncio.create_task(source.run(intake))
    try:
        yield source, intake
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def v1() -> AsyncIterator[Device]:
    device = Device(api=1)
    await device.start()
    yield device
    await device.stop()


@pytest.fixture
async def v2(pki: Pki) -> AsyncIterator[Device]:
    cert_file, key_file = pki.issue("p1meter", ("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    device = Device(api=2)
    await device.start(context)
    yield device
    await device.stop()


async def test_v1_signed_power_per_phase_and_voltages(v1: Device) -> None:
    async with polling(v1) as (_, intake):
        reading = await intake.next_reading()
    assert (reading.import_w, reading.export_w, reading.net_w) == (0, 543, -543)
    assert reading.phase_import_w == (0, 133, 0)
    assert reading.phase_export_w == (676, 0, 0)
    assert reading.phase_voltage_v == (230.111, 229.1, 230.3)
    assert v1.requests[0].path == "/api/v1/data"
    assert "Authorization" not in v1.requests[0].headers


async def test_v1_server_errors_are_counted_and_polling_goes_on(v1: Device) -> None:
    v1.statuses = [500, 503]
    async with polling(v1) as (_, intake):
        reading = await intake.next_reading()
    assert reading.net_w == -543
    assert [reason for reason, _ in intake.rejections] == [Rejection.HTTP_ERROR] * 2
    assert intake.rejections[0][1] == "HTTP 500 Internal Server Error"


async def test_a_redirect_is_refused_never_followed(v1: Device) -> None:
    """The request (with the token, over v2) goes to the configured host only."""
    elsewhere = Device(api=1)
    await elsewhere.start()
    try:
        v1.redirect_to = f"http://127.0.0.1:{elsewhere.port}/api/v1/data"
        async with polling(v1) as (_, intake):
            await intake.rejected(Rejection.HTTP_ERROR, count=2)
    finally:
        await elsewhere.stop()
    assert elsewhere.requests == []
    assert intake.rejections[0][1] == "HTTP 302 Found: a redirect, not followed"


async def test_v1_a_device_that_does_not_answer_times_out(v1: Device) -> None:
    v1.stall = asyncio.Event()
    async with polling(v1, timeout=0.2) as (_, intake):
        await intake.rejected(Rejection.TIMEOUT, count=2)
        v1.stall.set()
        reading = await intake.next_reading()
    assert reading.net_w == -543
    assert {reason for reason, _ in intake.rejections} == {Rejection.TIMEOUT}


async def test_v1_a_slow_device_within_the_timeout_is_fine(v1: Device) -> None:
    v1.delay_s = 0.3
    async with polling(v1, timeout=2) as (_, intake):
        await intake.next_reading()
        await intake.next_reading()
    assert intake.rejections == []


async def test_an_unreachable_device_is_counted() -> None:
    device = Device(api=1)
    device.port = free_port()  # nothing listens there
    async with polling(device) as (source, intake):
        await intake.rejected(Rejection.UNREACHABLE, count=3)
    assert source.polls >= 3


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("not json", Rejection.BAD_JSON),
        ({"active_power_l1_w": 5}, Rejection.MISSING_FIELD),
        ({"active_power_w": "lots"}, Rejection.NOT_A_NUMBER),
        ([1, 2, 3], Rejection.BAD_JSON),
    ],
)
async def test_v1_bad_answers_are_counted(v1: Device, document: Any, reason: Rejection) -> None:
    v1.document = document
    async with polling(v1) as (_, intake):
        await intake.rejected(reason)
    assert intake.readings == []


async def test_v2_over_https_with_token_and_ca(v2: Device, pki: Pki) -> None:
    async with polling(v2, token=TOKEN, ca_file=pki.ca_file) as (_, intake):
        reading = await intake.next_reading()
    assert (reading.import_w, reading.export_w) == (1210, 0)
    assert reading.phase_import_w == (1000, 300, 0)
    assert reading.phase_export_w == (0, 0, 90)
    assert reading.phase_voltage_v == (230.1, 229.1, 230.3)
    assert v2.requests[0].path == "/api/measurement"
    assert v2.requests[0].secure


async def test_v2_a_wrong_token_is_an_http_error(v2: Device, pki: Pki) -> None:
    async with polling(v2, token="F" * 32, ca_file=pki.ca_file) as (_, intake):
        await intake.rejected(Rejection.HTTP_ERROR)
    assert intake.rejections[0][1] == "HTTP 401 Unauthorized (check token)"


async def test_v2_verify_false_accepts_the_devices_own_certificate(v2: Device) -> None:
    async with polling(v2, token=TOKEN, verify=False) as (_, intake):
        assert (await intake.next_reading()).import_w == 1210


async def test_v2_refuses_a_certificate_from_another_ca(v2: Device, tmp_path: Path) -> None:
    other = Pki(tmp_path / "other", *_other_ca(tmp_path / "other"))
    async with polling(v2, token=TOKEN, ca_file=other.ca_file) as (_, intake):
        await intake.rejected(Rejection.UNREACHABLE)
    assert "CERTIFICATE_VERIFY_FAILED" in intake.rejections[0][1]
    assert intake.readings == []


async def test_v2_checks_the_certificate_name_when_given(v2: Device, pki: Pki) -> None:
    async with polling(v2, token=TOKEN, ca_file=pki.ca_file, server_name="127.0.0.1") as (
        _,
        intake,
    ):
        assert (await intake.next_reading()).import_w == 1210
    wrong = {"token": TOKEN, "ca_file": pki.ca_file, "server_name": "appliance/p1dongle/1"}
    async with polling(v2, **wrong) as (_, intake):
        await intake.rejected(Rejection.UNREACHABLE)


def _other_ca(directory: Path) -> tuple[Path, Any]:
    from tests.pki import make_ca

    directory.mkdir()
    return make_ca(directory, "other-ca")


@pytest.mark.parametrize(("interval", "cap"), [(1.0, 5.0), (0.5, 5.0), (10.0, 10.0)])
def test_a_failing_meter_is_asked_again_within_seconds(interval: float, cap: float) -> None:
    """The retries were capped at 30 s, the default stale_after: a 20 s outage became a
    silence the stale guard paused the charger for."""
    source = HomeWizardSource(HomeWizardSettings(host="127.0.0.1", interval=interval))
    assert source.retry_cap_s == cap


def test_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"greater than or equal to 0\.5"):
        HomeWizardSettings(host="127.0.0.1", interval=0.2)
    with pytest.raises(ValueError, match="api 2 needs token"):
        HomeWizardSettings(host="127.0.0.1", api=2, verify=False)
    with pytest.raises(ValueError, match="not publicly trusted; set ca_file"):
        HomeWizardSettings(host="127.0.0.1", api=2, token=TOKEN)
    with pytest.raises(ValueError, match="token, ca_file and server_name are for api: 2"):
        HomeWizardSettings(host="127.0.0.1", token=TOKEN)
    with pytest.raises(ValueError, match="write the host alone"):
        HomeWizardSettings(host="http://127.0.0.1/api")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    settings_v2 = HomeWizardSettings(host="::1", api=2, token_file=token_file, verify=False)
    assert settings_v2.token is not None
    assert settings_v2.token.get_secret_value() == TOKEN
    assert settings_v2.url == "https://[::1]/api/measurement"
    assert HomeWizardSettings(host="p1meter.local").interval == 1.0


documents = json_documents(
    "active_power_w",
    "power_w",
    "active_power_l1_w",
    "power_l2_w",
    text_size=8,
    list_size=3,
    leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(documents, max_size=10), st.sampled_from([1, 2]))
def test_arbitrary_json_never_crashes_nor_publishes_implausible_values(
    answers: list[Any], api: int
) -> None:
    intake = PipelineIntake.relaying(stale_after=3600)
    for document in answers:
        try:
            intake.reading(measurement(document, api, intake.now))  # type: ignore[arg-type]
        except InputRejected as exc:
            intake.reject(exc.reason, exc.detail)
    assert_plausible(intake)


async def test_the_service_publishes_from_a_homewizard_meter(
    broker: BrokerProcess, v1: Device
) -> None:
    source = {"type": "homewizard", "host": "127.0.0.1", "port": v1.port, "interval": 0.5}
    settings = settings_for(broker, source=source, publish={"interval": 0})
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe("p1evse/grid_ie")
        await probe.wait_for_payload("p1evse/grid_ie", "-543")
        v1.document = {**V1_DATA, "active_power_w": 1500}
        await probe.wait_for_payload("p1evse/grid_ie", "1500")
