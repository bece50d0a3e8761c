"""The HomeWizard P1 meter's local HTTP API, polled.

- API v1: `GET http://<host>/api/v1/data`: `active_power_w` (signed W, negative is
  export), `active_power_l1_w` ..., `active_voltage_l1_v` ...
- API v2: `GET https://<host>/api/measurement` with a bearer token and
  `X-Api-Version: 2`: `power_w`, `power_l1_w` ..., `voltage_l1_v` ... The device's
  certificate is signed by HomeWizard's own CA, not a public one: give that CA as
  `ca_file` (the chain is checked; the host name only if `server_name` is set, since the
  certificate names the device's serial, not its address), or say `verify: false`.

Polled every `interval` seconds (the meter updates once a second; HomeWizard asks for
no more than two requests a second). Timeouts, HTTP errors and an unreachable device
are counted as rejections and retried with backoff; the source never stops.

aiohttp is imported when the source starts, so configurations without it don't carry
its memory.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from p1evse.backoff import Backoff
from p1evse.counts import Count
from p1evse.errors import InputRejected
from p1evse.inputs import load_json, number_at, one_line, read_body
from p1evse.model import Phases, Reading, Rejection
from p1evse.settings import Host, Section, check_tls_files, secrets_from_files
from p1evse.sources.mqtt_value import signed_reading

if TYPE_CHECKING:
    import aiohttp

    from p1evse.mqtt import MqttPort
    from p1evse.sources import Intake

MIN_INTERVAL_S = 0.5
MAX_RESPONSE_BYTES = 65_536

# api version -> (scheme, path, total power field, per-phase power, per-phase voltage)
_API = {
    1: (
        "http",
        "/api/v1/data",
        "active_power_w",
        ("active_power_l1_w", "active_power_l2_w", "active_power_l3_w"),
        ("active_voltage_l1_v", "active_voltage_l2_v", "active_voltage_l3_v"),
    ),
    2: (
        "https",
        "/api/measurement",
        "power_w",
        ("power_l1_w", "power_l2_w", "power_l3_w"),
        ("voltage_l1_v", "voltage_l2_v", "voltage_l3_v"),
    ),
}


# A meter on the LAN that failed is asked again at least this often: a longer wait (it was
# 30 s) turned a Wi-Fi roam of 20 s into a silence past the default stale_after, and a
# pause the stale guard would not have sent.
RETRY_CAP_S = 5.0


class HomeWizardSettings(Section):
    type: Literal["homewizard"] = "homewizard"
    host: Host  # address or name of the P1 meter
    port: int | None = Field(None, ge=1, le=65535)  # default 80 (v1) / 443 (v2)
    api: Literal[1, 2] = 1
    token: SecretStr | None = None  # v2: the token the device issued
    token_file: Path | None = None
    ca_file: Path | None = None  # v2: HomeWizard's CA certificate
    verify: bool = True  # v2: false accepts any certificate
    server_name: str | None = None  # v2: the name the certificate must carry
    interval: float = Field(1.0, ge=MIN_INTERVAL_S, le=300)
    timeout: float = Field(3.0, gt=0, le=60)

    @model_validator(mode="before")
    @classmethod
    def _token_from_file(cls, data: Any) -> Any:
        return secrets_from_files(data, "token")

    @model_validator(mode="after")
    def _v2_needs_token_and_trust(self) -> HomeWizardSettings:
        if self.api == 1:
            if self.token is not None or self.ca_file is not None or self.server_name is not None:
                raise ValueError("token, ca_file and server_name are for api: 2 (HTTPS)")
            return self
        if self.token is None or not self.token.get_secret_value().strip():
            raise ValueError("api 2 needs token (or token_file): the device issues it")
        if self.ca_file is None and self.verify:
            raise ValueError(
                "api 2: the device's certificate is not publicly trusted; set ca_file to "
                "HomeWizard's CA certificate, or verify: false"
            )
        check_tls_files(self.ca_file)
        return self

    @property
    def url(self) -> str:
        scheme, path, *_ = _API[self.api]
        port = f":{self.port}" if self.port is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}{port}{path}"

    def subscriptions(self) -> list[str]:
        return []

    def describe(self) -> str:
        return f"homewizard {self.url} every {self.interval:g} s"


class HomeWizardSource:
    def __init__(
        self,
        settings: HomeWizardSettings,
        broker: MqttPort | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._settings = settings
        self.retry_cap_s = max(settings.interval, RETRY_CAP_S)
        self._backoff = backoff or Backoff(initial=settings.interval, cap=self.retry_cap_s)
        self.polls = 0

    def counts(self) -> list[Count]:
        """Requests made; the failed ones are rejections, by reason."""
        return [Count("source_polls", "Requests made to the meter's HTTP API", self.polls)]

    async def run(self, intake: Intake) -> None:
        import aiohttp  # only this source needs it

        settings = self._settings
        loop = asyncio.get_running_loop()
        headers = {"Accept": "application/json"}
        if settings.token is not None:  # api 2, which needs one (api 1 takes none)
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
            headers["X-Api-Version"] = "2"
        async with aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=settings.timeout)
        ) as session:
            ssl_context = self._ssl_context()
            next_poll = loop.time()
            while True:
                if await self._poll(session, ssl_context, intake, loop):
                    self._backoff.reset()
                    next_poll = max(next_poll + settings.interval, loop.time())
                else:
                    next_poll = loop.time() + max(settings.interval, self._backoff.next_delay())
                await asyncio.sleep(next_poll - loop.time())

    def _ssl_context(self) -> ssl.SSLContext | bool:
        settings = self._settings
        if settings.api == 1:
            return True  # plain HTTP: unused
        if not settings.verify:
            return False
        context = ssl.create_default_context(cafile=str(settings.ca_file))
        context.check_hostname = settings.server_name is not None
        return context

    async def _poll(
        self,
        session: aiohttp.ClientSession,
        ssl_context: ssl.SSLContext | bool,
        intake: Intake,
        loop: asyncio.AbstractEventLoop,
    ) -> bool:
        """One request; True if it gave a reading."""
        import aiohttp

        settings = self._settings
        self.polls += 1
        try:
            async with session.get(
                settings.url,
                ssl=ssl_context,
                server_hostname=settings.server_name,
                allow_redirects=False,  # the token goes to the configured host only
            ) as response:
                if response.status != 200:
                    hint = " (check token)" if response.status in (401, 403) else ""
                    if 300 <= response.status < 400:
                        hint = ": a redirect, not followed"
                    intake.reject(
                        Rejection.HTTP_ERROR, f"HTTP {response.status} {response.reason}{hint}"
                    )
                    return False
                body = await read_body(response, MAX_RESPONSE_BYTES)
            reading = measurement(load_json(body, MAX_RESPONSE_BYTES), settings.api, loop.time())
        except InputRejected as exc:
            intake.reject(exc.reason, exc.detail)
            return False
        except TimeoutError:
            intake.reject(Rejection.TIMEOUT, f"no answer within {settings.timeout:g} s")
            return False
        except (aiohttp.ClientError, OSError) as exc:
            intake.reject(Rejection.UNREACHABLE, one_line(f"{type(exc).__name__}: {exc}"))
            return False
        intake.reading(reading)
        return True


def measurement(document: Any, api: Literal[1, 2], at: float) -> Reading:
    """A reading from the device's JSON: signed total, signed per phase, voltages."""
    _, _, total, phase_power, phase_voltage = _API[api]
    if not isinstance(document, dict):
        raise InputRejected(Rejection.BAD_JSON, "not a JSON object")
    reading = signed_reading(at, number_at(document, total))
    power = _optional(document, phase_power)
    return Reading(
        at,
        reading.import_w,
        reading.export_w,
        _split(power, 1.0),
        _split(power, -1.0),
        _optional(document, phase_voltage),
    )


def _optional(document: Any, fields: tuple[str, ...]) -> Phases | None:
    values: list[float | None] = []
    for field in fields:
        try:
            values.append(number_at(document, field))
        except InputRejected:
            values.append(None)
    if all(value is None for value in values):
        return None
    return (values[0], values[1], values[2])


def _split(power: Phases | None, sign: float) -> Phases | None:
    """Signed per-phase power -> the import (sign 1) or export (sign -1) part, >= 0."""
    if power is None:
        return None
    parts = [None if value is None else max(value * sign, 0.0) for value in power]
    return (parts[0], parts[1], parts[2])
