"""What the charger reports back, and the one rule it feeds: whether to pause.

Both transports fill a `ChargerState` (MQTT from `<base>/amp`, `pilot`, …; HTTP from
`GET /status`) by the field names of the firmware's `/status`. Values keep its names and
units but one: the current the car draws, `amp` in mA on the wire, is kept as `amps` in A.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from p1evse.counts import Count
from p1evse.errors import InputRejected
from p1evse.inputs import excerpt, load_json, to_number
from p1evse.model import GridPower, Rejection, StaleAction
from p1evse.pipeline import MAX_VOLTAGE_V
from p1evse.ratelimit import RateLimiter
from p1evse.settings import PublishTopic, Section, TopicPrefix, secrets_from_files

log = logging.getLogger(__name__)


# An HTTP claim needs a numeric client id of our own, built as OpenEVSE's EvseClient ids
# are (a vendor in the high 16 bits) with "P1" below. The firmware reads the id from the
# URL with String::toInt, a signed 32-bit number: past 0x7FFFFFFF every id becomes that
# one (vendor 0xFFFE, "unregistered", included), so the vendor is 0x7FFE.
HTTP_CLAIM_CLIENT_ID = 0x7FFE_5031
MAX_HTTP_CLAIM_CLIENT_ID = 0x7FFF_FFFE

# a report of normal mode stands this long: four of the firmware's 30 s status reports
MODE_FRESH_S = 120.0


class OpenevseSettings(Section):
    transport: Literal["mqtt", "http"] = "mqtt"
    grid_ie_topic: PublishTopic = "p1evse/grid_ie"
    base_topic: TopicPrefix = "openevse"
    # feed the current shaper too: MQTT to live_pwr_topic, HTTP as shaper_live_pwr
    shaper: bool = False
    live_pwr_topic: PublishTopic = "p1evse/live_pwr"
    # feed the meter's voltage (mean of the phases): MQTT to vrms_topic, HTTP as voltage
    voltage: bool = False
    vrms_topic: PublishTopic = "p1evse/vrms"
    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    claim_client_id: int = Field(HTTP_CLAIM_CLIENT_ID, ge=1, le=MAX_HTTP_CLAIM_CLIENT_ID)
    timeout: float = Field(5.0, gt=0, le=60)
    poll_interval: float = Field(10.0, ge=1, le=3600)  # s between GET /status over HTTP
    # MQTT with on_stale pause: a second connection whose last will pauses the charger
    # if p1evse dies; its retained marker tells the next run whether the will fired
    deadman: bool = True
    deadman_keepalive: int = Field(10, ge=2, le=600)  # s; the broker acts in 1.5x this
    deadman_topic: PublishTopic = "p1evse/deadman"

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        return secrets_from_files(data, "password")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        text = url.strip()
        parts = urlsplit(text)
        if "@" in text:
            raise ValueError(
                "put the login in openevse.username and openevse.password, not the url"
            )
        try:
            parts.port  # noqa: B018 - raises for a port that is no number or too large
        except ValueError:
            raise ValueError("the port after ':' is a number from 1 to 65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in text:
            raise ValueError("expected the charger's address like http://openevse.local")
        if "?" in text or "#" in text:
            raise ValueError(
                "the charger's address has no '?' or '#' part (p1evse adds /status, "
                "/claims/… to it)"
            )
        return text.rstrip("/")

    @model_validator(mode="after")
    def _transport_needs(self) -> OpenevseSettings:
        if self.transport == "http" and self.url is None:
            raise ValueError(
                "transport http needs url, the charger's address (http://openevse.local)"
            )
        return self

    @property
    def claim_topic(self) -> str:
        return f"{self.base_topic}/claim/set"

    def deadman_armed(self, on_stale: StaleAction) -> bool:
        """The dead-man's switch pauses the charger as the stale guard would: only over
        MQTT (a last will is an MQTT message) and with `on_stale: pause`."""
        return self.deadman and self.transport == "mqtt" and on_stale is StaleAction.PAUSE

    def mode_fresh_s(self) -> float:
        """How long a report of normal mode stands without another: over MQTT the
        firmware sends its status, divert mode in it, every 30 s (and on a change); over
        HTTP p1evse asks every `poll_interval`."""
        if self.transport == "http":
            return max(MODE_FRESH_S, 2 * self.poll_interval + self.timeout)
        return MODE_FRESH_S

    def route(self) -> ChargerRoute:
        """Where the values and the pause claim go, and how the charger is read back."""
        if self.transport == "http":
            return ChargerRoute(
                "http",
                f"{self.url}/status",
                f"{self.url}/claims/{self.claim_client_id}",
                f"HTTP {self.url}",
                confirms_sent=True,
            )
        return ChargerRoute(
            "mqtt", self.grid_ie_topic, self.claim_topic, f"MQTT {self.base_topic}/…"
        )


@dataclass(frozen=True, slots=True)
class ChargerRoute:
    transport: str
    sent_to: str  # the grid value
    claim_to: str  # the pause claim
    via: str  # the charger's reports
    # a value is sent once the charger answered it (HTTP), not once it is made (MQTT:
    # the broker connection takes it, and counts what it drops)
    confirms_sent: bool = False


class DivertMode(enum.IntEnum):
    NORMAL = 1
    ECO = 2


class EvseState(enum.IntEnum):
    """The EVSE's state codes, as OpenEVSE reports them in `state` (the firmware's
    OPENEVSE_STATE_*); the byte may hold others, which are shown by number."""

    STARTING = 0
    NOT_CONNECTED = 1
    CONNECTED = 2
    CHARGING = 3
    VENT_REQUIRED = 4
    DIODE_CHECK_FAILED = 5
    GFI_FAULT = 6
    NO_EARTH_GROUND = 7
    STUCK_RELAY = 8
    GFI_SELF_TEST_FAILED = 9
    OVER_TEMPERATURE = 10
    OVER_CURRENT = 11
    SLEEPING = 254
    DISABLED = 255


EVSE_STATE_TEXT: dict[int, str] = {
    EvseState.STARTING: "starting",
    EvseState.NOT_CONNECTED: "no car connected",
    EvseState.CONNECTED: "car connected",
    EvseState.CHARGING: "charging",
    EvseState.VENT_REQUIRED: "error: ventilation required",
    EvseState.DIODE_CHECK_FAILED: "error: diode check failed",
    EvseState.GFI_FAULT: "error: GFCI fault",
    EvseState.NO_EARTH_GROUND: "error: no ground",
    EvseState.STUCK_RELAY: "error: stuck relay",
    EvseState.GFI_SELF_TEST_FAILED: "error: GFCI self-test failed",
    EvseState.OVER_TEMPERATURE: "error: over temperature",
    EvseState.OVER_CURRENT: "error: over current",
    EvseState.SLEEPING: "sleeping",
    EvseState.DISABLED: "disabled",
}


def describe_state(code: int) -> str:
    """The EVSE's state for people: its text, or `state <code>` for a code not known."""
    return EVSE_STATE_TEXT.get(code, f"state {code}")


@dataclass(slots=True)
class ChargerState:
    amps: float | None = None  # A the car draws
    pilot: float | None = None  # A offered to the car
    state: int | None = None  # the EVSE's state code, an `EvseState` or another byte
    divertmode: DivertMode | None = None
    divert_active: bool | None = None
    charge_rate: float | None = None  # A that divert asks for
    voltage: float | None = None  # V the charger uses for its maths (fed, or its own)
    updated_at: float | None = None  # loop time of the last report
    mode_at: float | None = None  # loop time of the last report of the divert mode
    mode_fresh_s: float = field(default=MODE_FRESH_S, kw_only=True)  # see OpenevseSettings
    rejected: dict[Rejection, int] = field(default_factory=dict)  # reports refused

    def update(self, name: str, raw: Any, at: float) -> None:
        """Take one reported value by its name in `/status` (a JSON value, or an MQTT
        payload holding one); `InputRejected` says why it was refused (and it is counted)."""
        try:
            value = _parse(name, load_json(raw, MAX_REPORT_BYTES) if _is_bytes(raw) else raw)
        except InputRejected as exc:
            self._count(exc)
            raise
        setattr(self, FIELD_NAMES.get(name, name), value)
        self.updated_at = at
        if name == "divertmode":
            self.mode_at = at

    def update_all(self, answer: bytes, at: float) -> None:
        """Take every known field of the answer to `GET /status`; the first one refused
        is raised once all the others are taken."""
        try:
            status = load_json(answer, MAX_ANSWER_BYTES)
            if not isinstance(status, dict):
                raise InputRejected(Rejection.BAD_JSON, "/status is not a JSON object")
        except InputRejected as exc:
            self._count(exc)
            raise
        refused: InputRejected | None = None
        for name in READ_BACK_FIELDS:
            if name in status:
                try:
                    self.update(name, status[name], at)
                except InputRejected as exc:
                    refused = refused or exc
        if refused is not None:
            raise refused

    def _count(self, refused: InputRejected) -> None:
        self.rejected[refused.reason] = self.rejected.get(refused.reason, 0) + 1

    def counts(self) -> list[Count]:
        return [
            Count(
                "charger_rejected",
                "Reports and answers of the charger refused, by reason",
                count,
                {"reason": reason.value},
            )
            for reason, count in self.rejected.items()
        ]

    def pause_allowed(self, now: float) -> bool:
        """The stale guard pauses an Eco charge, or one whose mode is unknown; a charger
        known to be in normal mode is someone's deliberate charge and is left alone.
        Known means told within `mode_fresh_s`: a retained report of a charger long gone
        from the broker spares nothing."""
        lapses = self.normal_mode_lapses()
        return lapses is None or now >= lapses

    def normal_mode_lapses(self) -> float | None:
        """When the last report of normal mode stops standing; None: not in normal mode."""
        if self.divertmode is not DivertMode.NORMAL or self.mode_at is None:
            return None
        return self.mode_at + self.mode_fresh_s


READ_BACK_FIELDS = (
    "amp",
    "pilot",
    "state",
    "divertmode",
    "divert_active",
    "charge_rate",
    "voltage",
)
FIELD_NAMES = {"amp": "amps"}  # a report's name -> ours, where they differ
MILLIAMPS_PER_AMP = 1000.0
MAX_REPORT_BYTES = 64  # one number or true/false per topic
MAX_ANSWER_BYTES = 65_536  # the firmware's /status and /config are a few kB
EVSE_STATE_CODES = range(256)  # the EVSE's state is one byte
MAX_CHARGER_A = 80.0  # J1772's ceiling, and OpenEVSE's hardware's
# divert's wish is floor(export / voltage), not clamped to the charger's maximum
MAX_CHARGE_RATE_A = 1000.0
# the highest value a charger can report, and its unit on the wire
MAX_REPORTED = {
    "amp": (MAX_CHARGER_A * MILLIAMPS_PER_AMP, "mA"),
    "pilot": (MAX_CHARGER_A, "A"),
    "charge_rate": (MAX_CHARGE_RATE_A, "A"),
    "voltage": (MAX_VOLTAGE_V, "V"),
}


def _is_bytes(raw: Any) -> bool:
    return isinstance(raw, bytes | bytearray)


def _parse(name: str, value: Any) -> Any:
    """A reported value of the type the firmware's `/status` gives it, `amp` in A."""
    if name == "divert_active":
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise InputRejected(
            Rejection.BAD_JSON, f"{name} = {str(value)[:32]}: expected true or false"
        )
    number = to_number(value, name)
    if name == "divertmode":
        if number not in (1, 2):
            raise InputRejected(Rejection.IMPLAUSIBLE, f"{name} = {number:g}: expected 1 or 2")
        return DivertMode(int(number))
    if name == "state":
        if number not in EVSE_STATE_CODES:
            raise InputRejected(Rejection.IMPLAUSIBLE, f"{name} = {number:g}: expected 0 to 255")
        return int(number)
    if number < 0:
        raise InputRejected(Rejection.NEGATIVE, f"{name} = {number:g}")
    most, unit = MAX_REPORTED[name]
    if number > most:
        raise InputRejected(
            Rejection.IMPLAUSIBLE, f"{name} = {number:g} {unit}: expected at most {most:g}"
        )
    return number / MILLIAMPS_PER_AMP if name == "amp" else number


class ReportLog:
    """Logs the charger's refused reports: at most once a minute per reason, naming how
    many were left out; a broken report is a counted line, never a traceback."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._limit = RateLimiter(REPORT_LOG_PERIOD_S, clock)

    def refused(
        self, exc: InputRejected, where: str, payload: bytes | bytearray | None = None
    ) -> None:
        """`exc` refused what came on `where` (a topic, a URL); `payload`: what it was."""
        more = self._limit.note(exc.reason)
        if more is None:
            return
        log.warning(
            "refused a report from OpenEVSE on %s (%s): %s%s%s",
            where,
            exc.reason.value,
            exc.detail,
            "" if payload is None else f"; payload {excerpt(payload)}",
            more,
        )


REPORT_LOG_PERIOD_S = 60.0


@dataclass(slots=True)
class PauseIntent:
    """Whether p1evse should hold its pause claim now: the stale guard fired with
    `on_stale: pause`, and the charger is not known to be in normal mode."""

    charger: ChargerState
    clock: Callable[[], float]
    stale: bool = False
    held: bool = False  # the claim the charger has from us: sent, and not released
    # told when `held` changes (the status page shows the claim)
    listeners: list[Callable[[bool], None]] = field(default_factory=list)
    _spared_logged: bool = False

    def claimed(self, held: bool) -> None:
        """The claim was sent (True) or released (False)."""
        self.held = held
        for listener in self.listeners:
            listener(held)

    def charger_pausable(self) -> bool:
        """The charger may be paused now: not known to be in normal mode."""
        return self.charger.pause_allowed(self.clock())

    def wanted(self) -> bool:
        """The pause is wanted now; a charger spared for its normal mode is said once."""
        wants = self._wants()
        spared = self.stale and not wants
        if spared and not self._spared_logged:
            log.warning("no valid reading, but OpenEVSE is in normal mode: not pausing it")
        self._spared_logged = spared
        return wants

    def settled(self) -> bool:
        """The charger holds the claim that is wanted (asked on every report of the
        mode, so it logs nothing, unlike `wanted`)."""
        return self._wants() == self.held

    def _wants(self) -> bool:
        return self.stale and self.charger_pausable()

    def spared_until(self) -> float | None:
        """When a charger spared for its normal mode is to be paused after all, unless it
        reports its mode again by then; None: no charger is being spared."""
        lapses = self.charger.normal_mode_lapses()
        if not self.stale or lapses is None or lapses <= self.clock():
            return None
        return lapses


# OpenEVSE takes a fed voltage between these (else its configured one, else 240 V)
VOLTAGE_RANGE_V = (60.0, 300.0)


def feed_voltage(value: GridPower) -> float | None:
    """The voltage for OpenEVSE's divert maths that goes with `value`: the meter's mean
    phase voltage, when OpenEVSE would accept it."""
    mean = value.voltage_v
    if mean is None:
        return None
    low, high = VOLTAGE_RANGE_V
    return round(mean, 1) if low <= mean <= high else None
