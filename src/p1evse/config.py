"""The configuration contract (DESIGN.md): one YAML file, every key overridable by
`P1EVSE_<SECTION>__<KEY>`, defaults that reproduce the original script's setup.

`load()` returns validated `Settings` or raises `ConfigError` with one line per problem
naming the key, the bad value, what is allowed, and where it came from (file line or
environment variable).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from paho.mqtt.client import topic_matches_sub
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from p1evse.errors import ConfigError
from p1evse.model import StaleAction
from p1evse.pipeline import PublishSettings
from p1evse.settings import PublishTopic, Section, secrets_from_files
from p1evse.sources import SOURCE_TYPES, SourceSettings
from p1evse.sources.mqtt_split import MqttSplitSettings

# keys whose values never appear in an error message
SECRET_KEYS = frozenset({"password", "token", "decryption_key", "authentication_key"})
ENV_PREFIX = "P1EVSE_"
ENV_DELIMITER = "__"
CONFIG_PATH_VARIABLE = "P1EVSE_CONFIG"


class TlsSettings(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _cert_needs_key(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self


class MqttSettings(Section):
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: TlsSettings | None = None
    client_id: str = Field("p1evse", min_length=1, max_length=64)
    keepalive: int = Field(30, ge=5, le=3600)
    availability_topic: PublishTopic = "p1evse/status"
    # retained JSON of the whole state (meter, value sent, charger, stale, counters)
    state_topic: PublishTopic | None = "p1evse/state"

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        return secrets_from_files(data, "password")

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_flag(cls, value: object) -> object:
        """`tls: true` means TLS with the system's CAs; `tls: false` means plain TCP."""
        if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
            value = value.strip().lower() in {"true", "1"}
        if value is True:
            return {}
        if value is False:
            return None
        return value


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (a name other than localhost is
    not resolved, so it counts as reachable from elsewhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# An HTTP claim needs a numeric client id of our own: vendor 0xFFFE ("unregistered") in
# the high 16 bits, as OpenEVSE's EvseClient ids are built, and "P1" below.
HTTP_CLAIM_CLIENT_ID = 0xFFFE_5031


class OpenevseSettings(Section):
    transport: Literal["mqtt", "http"] = "mqtt"
    grid_ie_topic: PublishTopic = "p1evse/grid_ie"
    base_topic: PublishTopic = "openevse"
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
    claim_client_id: int = Field(HTTP_CLAIM_CLIENT_ID, ge=1, le=0xFFFF_FFFF)
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
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"expected the charger's address like http://openevse.local, got {url!r}"
            )
        if parts.username or parts.password:
            raise ValueError(
                "put the login in openevse.username and openevse.password, not the url"
            )
        return url.strip().rstrip("/")

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


# A token guards the page from the network; a short one is guessed in minutes.
MIN_TOKEN_CHARS = 16
# a DNS name: dot-separated labels of letters, digits and inner hyphens
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _is_host(host: str) -> bool:
    """An IP address (IPv6 in brackets, or bare) or a name that could resolve: anything
    else can never be listened on, which is a config error, not a reason to retry."""
    bracketed = host.startswith("[")
    address = host[1:-1] if bracketed and host.endswith("]") else host
    try:
        return ipaddress.ip_address(address).version == 6 or not bracketed
    except ValueError:
        return not bracketed and len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


class WebSettings(Section):
    listen: str | None = "127.0.0.1:8080"
    token: SecretStr | None = None
    token_file: Path | None = None
    # A household's clients: a few phones and desktops (a live stream each, a few
    # connections while a page loads), Prometheus, Home Assistant, a health check.
    max_connections: int = Field(64, ge=2, le=10_000)
    max_streams: int = Field(16, ge=1, le=10_000)
    header_timeout: float = Field(10.0, gt=0, le=300)  # s to send a request's headers
    write_timeout: float = Field(5.0, gt=0, le=300)  # s a client may leave a write unread

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value().strip()) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"a token needs at least {MIN_TOKEN_CHARS} characters, this one has "
                f"{len(token.get_secret_value().strip())}: use a long random string, "
                "e.g. from `openssl rand -hex 16`"
            )
        return token

    @field_validator("listen", mode="before")
    @classmethod
    def _host_port(cls, listen: object) -> object:
        if listen is None or (isinstance(listen, str) and not listen.strip()):
            return None  # empty = off
        text = str(listen).strip() if isinstance(listen, str | int) else None
        if text is not None and text.isdigit():
            raise ValueError(
                f"expected host:port, got only a port: {text!r}; 127.0.0.1:{text} serves "
                f"this machine, 0.0.0.0:{text} the network (then set web.token)"
            )
        host, sep, port = (text or "").rpartition(":")
        if not sep or not _is_host(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port such as 127.0.0.1:8080, got {listen!r}")
        return text

    @model_validator(mode="before")
    @classmethod
    def _token_from_file(cls, data: Any) -> Any:
        return secrets_from_files(data, "token")

    @model_validator(mode="after")
    def _streams_leave_room(self) -> WebSettings:
        if self.max_streams >= self.max_connections:
            raise ValueError(
                f"max_streams ({self.max_streams}) must be below max_connections "
                f"({self.max_connections}): every live page's stream is a connection, and "
                "/healthz and /metrics need one too"
            )
        return self

    @property
    def host(self) -> str:
        """The address to bind, without the brackets of an IPv6 literal."""
        assert self.listen is not None
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        assert self.listen is not None
        return int(self.listen.rpartition(":")[2])


class HomeAssistantSettings(Section):
    """MQTT discovery: p1evse's values appear in Home Assistant as one device."""

    discovery: bool = False
    prefix: PublishTopic = "homeassistant"


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(Section):
    mqtt: MqttSettings = MqttSettings()
    source: SourceSettings = Field(default_factory=MqttSplitSettings)
    publish: PublishSettings = PublishSettings()
    openevse: OpenevseSettings = OpenevseSettings()
    web: WebSettings = WebSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _discovery_needs_state_topic(self) -> Settings:
        if self.homeassistant.discovery and self.mqtt.state_topic is None:
            raise ValueError(
                "homeassistant.discovery reads p1evse's state topic: set mqtt.state_topic"
            )
        return self

    @field_validator("source", mode="before")
    @classmethod
    def _default_source_type(cls, value: object) -> object:
        """No `type` is the default source; a type is named in any case."""
        if isinstance(value, dict):
            kind = value.get("type", "mqtt_split")
            return {**value, "type": kind.strip().lower() if isinstance(kind, str) else kind}
        return value


def load(path: Path | None) -> Settings:
    """Read and validate the configuration; raise `ConfigError` listing every problem."""
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    if path is not None:
        data, lines = _read_yaml(path)
    _merge(data, environment_overrides(os.environ))
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = [_describe(error, path, lines, os.environ) for error in exc.errors()]
        raise ConfigError(problems) from None
    loops = feedback_loops(settings)
    if loops:
        raise ConfigError(
            [
                f"{key} = {problem}{_origin(tuple(key.split('.')), path, lines, os.environ)}"
                for key, problem in loops
            ]
        )
    return settings


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`P1EVSE_MQTT__PORT=1884` -> {"mqtt": {"port": "1884"}}; names are case-insensitive
    and an empty value means null (`P1EVSE_WEB__LISTEN=` turns the web server off).

    pydantic-settings does this too, but importing it adds 2.3 MB to the service's
    37 MB peak RSS (of a 40 MB budget, bench/relay.py), for these few lines.
    """
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_PATH_VARIABLE:
            continue
        *sections, key = upper.removeprefix(ENV_PREFIX).lower().split(ENV_DELIMITER)
        node = overrides
        for section in sections:
            if not isinstance(node.get(section), dict):
                node[section] = {}
            node = node[section]
        node[key] = value or None
    return overrides


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def feedback_loops(settings: Settings) -> list[tuple[str, str]]:
    """Rule 8: never publish where p1evse or OpenEVSE would read it back in.
    Returns (key, problem) for every MQTT output topic that would."""
    problems = []
    base = settings.openevse.base_topic
    for key, out in output_topics(settings).items():
        problems += [
            (
                key,
                f"{out!r}: the source subscribes to {subscribed!r}; "
                "p1evse would read its own output",
            )
            for subscribed in settings.source.subscriptions()
            if topic_matches_sub(subscribed, out)
        ]
        if out == base or out.startswith(base + "/"):
            problems.append(
                (
                    key,
                    f"{out!r} is under OpenEVSE's base topic {base!r}; OpenEVSE echoes its "
                    f"feeds under {base}/ and would feed itself",
                )
            )
        if out == settings.mqtt.availability_topic:
            problems.append(
                (key, f"{out!r} is p1evse's availability topic (mqtt.availability_topic)")
            )
    return problems


def deadman_armed(settings: Settings) -> bool:
    """The dead-man's switch pauses the charger as the stale guard would: only over
    MQTT (a last will is an MQTT message) and with `on_stale: pause`."""
    return (
        settings.openevse.deadman
        and settings.openevse.transport == "mqtt"
        and settings.publish.on_stale is StaleAction.PAUSE
    )


def output_topics(settings: Settings) -> dict[str, str]:
    """The MQTT topics p1evse publishes values to, by config key."""
    openevse = settings.openevse
    topics = {}
    if settings.mqtt.state_topic is not None:
        topics["mqtt.state_topic"] = settings.mqtt.state_topic
    if openevse.transport != "mqtt":
        return topics
    topics["openevse.grid_ie_topic"] = openevse.grid_ie_topic
    if deadman_armed(settings):
        topics["openevse.deadman_topic"] = openevse.deadman_topic
    if openevse.shaper:
        topics["openevse.live_pwr_topic"] = openevse.live_pwr_topic
    if openevse.voltage:
        topics["openevse.vrms_topic"] = openevse.vrms_topic
    return topics


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason})"]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}{where}: not valid YAML: {problem}"]) from None
    finally:
        loader.dispose()
    if data is None or node is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}: expected a mapping of sections (mqtt:, source:, …) at the top"]
        )
    lines: dict[tuple[str, ...], int] = {}
    duplicates: list[str] = []
    _collect_lines(node, (), lines, duplicates)
    if duplicates:
        raise ConfigError([f"{path} {duplicate}" for duplicate in duplicates])
    return data, lines


def _collect_lines(
    node: yaml.Node,
    prefix: tuple[str, ...],
    lines: dict[tuple[str, ...], int],
    duplicates: list[str],
) -> None:
    """Each key's line; a key given twice in one mapping is a mistake YAML would hide
    (the last one silently wins)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            line = key_node.start_mark.line + 1
            if key in lines:
                duplicates.append(
                    f"line {line}: {'.'.join(key)} is set twice (first on line {lines[key]}); "
                    "keep one"
                )
            lines[key] = line
            _collect_lines(value_node, key, lines, duplicates)


def _describe(
    error: Mapping[str, Any],
    path: Path | None,
    lines: Mapping[tuple[str, ...], int],
    environ: Mapping[str, str],
) -> str:
    loc = _key_path(error["loc"])
    key = ".".join(loc) if loc else "(config)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        message = "unknown key" + _did_you_mean(str(error["loc"][-1]), allowed)
        if allowed:
            message += " Allowed: " + ", ".join(allowed)
    elif error["type"] in SECTION_EXPECTED and loc == ("source",):
        types = ", ".join(SOURCE_TYPES)
        message = f"expected a section of keys (type: one of {types}; and its keys)"
    elif error["type"] in SECTION_EXPECTED and _allowed_keys(error["loc"]):
        keys = ", ".join(_allowed_keys(error["loc"]))
        message = f"expected a section of keys ({keys}), not a single value"
    shown = "" if error["type"] in {"extra_forbidden", "missing"} else _show_input(error)
    if shown and loc and loc[-1] in SECRET_KEYS:
        shown = " = '**********'"
    if error["type"] == "union_tag_invalid":
        ctx = error["ctx"]
        loc = (*loc, "type")
        key, shown = ".".join(loc), f" = {ctx['tag']!r}"
        message = f"unknown source type; expected one of {ctx['expected_tags']}"
    return f"{key}{shown}: {message}{_origin(loc, path, lines, environ)}"


def _key_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    parts = [str(part) for part in loc]
    # a discriminated union puts its tag in the location: source.mqtt_split.unit
    if len(parts) >= 2 and parts[0] == "source" and parts[1] in SOURCE_TYPES:
        del parts[1]
    return tuple(parts)


def _show_input(error: Mapping[str, Any]) -> str:
    value = error.get("input")
    if isinstance(value, dict | list) or value is None:
        return ""
    if isinstance(value, SecretStr):
        return " = '**********'"
    text = repr(value)
    return f" = {text[:60]}…" if len(text) > 60 else f" = {text}"


# pydantic's error types for a single value where a section of keys belongs
SECTION_EXPECTED = frozenset({"model_type", "model_attributes_type", "dict_type"})


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key.lower(), allowed, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else "."


def _allowed_keys(section: tuple[int | str, ...]) -> list[str]:
    """The keys of the section at this location, if it is one."""
    model: type[BaseModel] | None = Settings
    if section[:1] == ("source",) and len(section) > 1 and section[1] in SOURCE_TYPES:
        model, _ = SOURCE_TYPES[str(section[1])]
        section = section[2:]
    for part in section:
        field = model.model_fields.get(str(part)) if model is not None else None
        annotation = field.annotation if field is not None else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return [] if model is None else list(model.model_fields)


def _origin(
    loc: tuple[str, ...],
    path: Path | None,
    lines: Mapping[tuple[str, ...], int],
    environ: Mapping[str, str],
) -> str:
    for depth in range(len(loc), 0, -1):
        wanted = (ENV_PREFIX + ENV_DELIMITER.join(loc[:depth])).upper()
        for name in environ:
            # an unknown section is named by the variables below it too
            if name.upper() == wanted or name.upper().startswith(wanted + ENV_DELIMITER):
                return f" (from environment variable {name})"
        if path is not None and loc[:depth] in lines:
            return f" ({path} line {lines[loc[:depth]]})"
    return ""
