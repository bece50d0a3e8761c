"""Configuration given as text: every key from the environment (walked over the whole
settings model), choices in any case, lists as `a,b` or JSON, MQTT's rules for topics,
duplicate YAML keys, and the messages a new user meets first."""

from __future__ import annotations

import enum
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic import BaseModel, SecretStr

from p1evse.config import Settings, load
from p1evse.errors import ConfigError
from p1evse.fleet.settings import Shard
from p1evse.sources.build import SOURCE_TYPES
from p1evse.web.settings import MIN_TOKEN_CHARS
from tests.pki import new_pki

TOKEN = "t0ken-0123456789abcdef"
HEX_KEY = "00112233445566778899AABBCCDDEEFF"


def problems(path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p1evse.yaml"
    path.write_text(text)
    return path


# -- every key from the environment -------------------------------------------------------

# What a source needs before any one key can be tried (required keys).
SOURCE_BASE: dict[str, dict[str, str]] = {
    "mqtt_split": {},
    "mqtt_value": {"topic": "home/grid/power"},
    "mqtt_json": {},
    "mqtt_telegram": {},
    "p1": {"url": "/dev/ttyUSB0"},
    "homewizard": {"host": "hw.local"},
}
# Keys that are valid only together with others: key path -> the others.
# ("p1:source.url" before "source.url" before "url")
COMPANIONS: dict[tuple[str, ...], dict[tuple[str, ...], str]] = {
    ("openevse", "transport"): {("openevse", "url"): "http://openevse.local"},
    ("web", "max_connections"): {("web", "max_streams"): "1"},
    ("mqtt", "tls", "cert_file"): {("mqtt", "tls", "key_file"): "{file}"},
    ("mqtt", "tls", "key_file"): {("mqtt", "tls", "cert_file"): "{file}"},
    ("mqtt_json", "source", "invert"): {("source", "power_field"): "SML.power"},
    ("source", "api"): {("source", "token"): TOKEN, ("source", "verify"): "false"},
    ("source", "token"): {("source", "api"): "2", ("source", "verify"): "false"},
    ("source", "token_file"): {("source", "api"): "2", ("source", "verify"): "false"},
    ("source", "ca_file"): {("source", "api"): "2", ("source", "token"): TOKEN},
    ("source", "server_name"): {
        ("source", "api"): "2",
        ("source", "token"): TOKEN,
        ("source", "verify"): "false",
    },
    ("source", "decryption_key"): {("source", "dsmr_version"): "MSn"},
    ("source", "decryption_key_file"): {("source", "dsmr_version"): "MSn"},
    ("source", "authentication_key_file"): {
        ("source", "dsmr_version"): "MSn",
        ("source", "decryption_key"): HEX_KEY,
    },
    ("source", "authentication_key"): {
        ("source", "dsmr_version"): "MSn",
        ("source", "decryption_key"): HEX_KEY,
    },
}
# The keys of a fleet need a fleet: source topics with a '+' level for the site id.
FLEET: dict[tuple[str, ...], str] = {
    ("source", "delivered_topic"): "dsmr/+/delivered",
    ("source", "returned_topic"): "dsmr/+/returned",
    ("openevse", "grid_ie_topic"): "p1evse/{{site}}/grid_ie",
    ("openevse", "base_topic"): "openevse/{{site}}",
    ("openevse", "deadman"): "false",
    ("mqtt", "state_topic"): "",
    ("publish", "stale_after"): "5",
    ("mqtt", "client_id"): "p1evse-a",  # each process of a fleet of many names itself
}
# a fleet key that needs others: a shared subscription, the broker's stickiness, and
# values more often than half of stale_after
FLEET_PAIRS: dict[tuple[str, ...], dict[tuple[str, ...], str]] = {
    ("fleet", "share_group"): {("fleet", "share_sticky"): "true", ("publish", "interval"): "2"},
    ("fleet", "share_sticky"): {("fleet", "share_group"): "p1evse", ("publish", "interval"): "2"},
}
# Text that a key's type alone does not tell (formats checked by validators).
SAMPLES: dict[str, str] = {
    "openevse.url": "http://openevse.local:8080",
    "url": "tcp://p1.local:8088",
    "listen": "0.0.0.0:9090",
    "token": TOKEN,
    "password": "pa55-word",
    "decryption_key": HEX_KEY,
    "authentication_key": HEX_KEY,
    "host": "example.org",
    "server_name": "p1meter",
    "username": "someone",
    "client_id": "p1evse-two",
    "share_group": "p1evse",
}


@dataclass(frozen=True)
class Key:
    path: tuple[str, ...]  # ("source", "unit"), ("mqtt", "tls", "ca_file")
    model: type[BaseModel]
    name: str
    source_type: str | None = None

    @property
    def variable(self) -> str:
        return "P1EVSE_" + "__".join(part.upper() for part in self.path)


def keys(
    model: type[BaseModel], prefix: tuple[str, ...], source_type: str | None = None
) -> Iterator[Key]:
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        if path == ("source",):
            for kind, (source_model, _) in SOURCE_TYPES.items():
                yield from keys(source_model, ("source",), kind)
            continue
        nested = _model(field.annotation)
        if nested is not None:
            yield from keys(nested, path, source_type)
        elif name != "type":
            yield Key(path, model, name, source_type)


def _model(annotation: Any) -> type[BaseModel] | None:
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _options(annotation: Any) -> tuple[Any, ...]:
    """`X | None` -> (X, None), each without its `Annotated` validators."""
    options = (
        get_args(annotation)
        if get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    return tuple(get_args(o)[0] if get_origin(o) is Annotated else o for o in options)


def sample(key: Key, file: Path) -> tuple[str, Any]:
    """Text for the key's variable (not its default) and the value it must give."""
    field = key.model.model_fields[key.name]
    if key.path == ("fleet", "shard"):
        return "1/3", Shard(1, 3)
    if key.path == ("fleet", "sites"):
        return "h1, h2", ["h1", "h2"]
    if key.path == ("web", "hosts"):
        return "p1evse.example.org, NAS.", ["p1evse.example.org", "nas"]
    for name in (".".join(key.path), key.name):
        if name in SAMPLES:
            return SAMPLES[name], SAMPLES[name]
    options = [option for option in _options(field.annotation) if option is not type(None)]
    kind = options[0]
    if get_origin(kind) is list:
        return "a/l1, a/l2", ["a/l1", "a/l2"]
    if get_origin(kind) is Literal:
        choice = next(c for c in get_args(kind) if c != field.default and c != "MSn")
        return str(choice).upper(), choice  # in any case
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        member = next(m for m in kind if m != field.default)
        return str(member.value).upper(), member
    if kind is bool:
        return ("false", False) if field.default else ("true", True)
    if kind is Path:
        return str(file), file
    if kind is SecretStr:
        return TOKEN, TOKEN
    if kind in (int, float):
        low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
        value = kind(low if low is not None and low != field.default else 7)
        return str(value), value
    if kind is str:
        return "some/where", "some/where"
    raise AssertionError(f"no sample for {key.path}: {field.annotation}")


ALL_KEYS = list(keys(Settings, ()))


TLS_FILES = {"ca_file", "cert_file", "key_file"}


@pytest.mark.parametrize(
    "key", ALL_KEYS, ids=[f"{k.source_type or ''}:{'.'.join(k.path)}" for k in ALL_KEYS]
)
def test_every_key_can_be_set_from_the_environment(
    key: Key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "secret"
    secret_text = HEX_KEY if key.name.endswith("_key_file") else TOKEN  # a meter's keys
    file.write_text(secret_text + "\n")
    if key.name in TLS_FILES:  # loaded when read: a certificate and its key, in one file
        cert_file, key_file = new_pki(tmp_path).issue("p1evse")
        file.write_bytes(cert_file.read_bytes() + key_file.read_bytes())
    text, expected = sample(key, file)
    if key.source_type is not None:
        monkeypatch.setenv("P1EVSE_SOURCE__TYPE", key.source_type)
        for name, value in SOURCE_BASE[key.source_type].items():
            monkeypatch.setenv(f"P1EVSE_SOURCE__{name.upper()}", value)
    companions = COMPANIONS.get((key.source_type or "", *key.path)) or COMPANIONS.get(key.path)
    if key.path[0] == "fleet":
        companions = {**FLEET, **FLEET_PAIRS.get(key.path, {})}
    for path, value in (companions or {}).items():
        monkeypatch.setenv("P1EVSE_" + "__".join(p.upper() for p in path), value.format(file=file))
    monkeypatch.setenv(key.variable, text)
    settings = load(None)
    node: Any = settings
    for part in key.path:
        node = getattr(node, part)
    if key.name.endswith("_file"):  # the secret's file: the secret holds its text
        secret = getattr(_parent(settings, key.path), key.name.removesuffix("_file"), None)
        if isinstance(secret, SecretStr):
            assert secret.get_secret_value() == secret_text
    if isinstance(node, SecretStr):
        node = node.get_secret_value()
    assert node == expected, key.variable


def _parent(settings: Settings, path: tuple[str, ...]) -> Any:
    node: Any = settings
    for part in path[:-1]:
        node = getattr(node, part)
    return node


def test_the_walk_covers_keys_of_every_kind() -> None:
    """The walk above reaches nested sections and every source's keys."""
    names = {".".join(key.path) for key in ALL_KEYS}
    assert {"mqtt.tls.ca_file", "source.api", "source.phase_delivered_topics"} <= names
    assert {key.source_type for key in ALL_KEYS} >= set(SOURCE_TYPES)


def test_lists_from_json_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P1EVSE_SOURCE__PHASE_VOLTAGE_TOPICS", '["v/1", "v/2", "v/3"]')
    assert load(None).source.phase_voltage_topics == ["v/1", "v/2", "v/3"]  # type: ignore[union-attr]
    monkeypatch.setenv("P1EVSE_SOURCE__PHASE_VOLTAGE_TOPICS", "")
    assert load(None).source.phase_voltage_topics == []  # type: ignore[union-attr]


def test_choices_in_any_case_from_a_file(tmp_path: Path) -> None:
    settings = load(
        write(
            tmp_path,
            "source:\n  type: P1\n  url: /dev/ttyUSB0\n  dsmr_version: q3d\n"
            "publish:\n  on_stale: Import\nopenevse:\n  transport: MQTT\nlog:\n  level: DEBUG\n",
        )
    )
    assert settings.source.type == "p1"
    assert settings.source.dsmr_version == "Q3D"  # type: ignore[union-attr]
    assert settings.publish.on_stale.value == "import"
    assert settings.log.level == "debug"
    numbered = load(
        write(tmp_path, "source:\n  type: p1\n  url: /dev/ttyUSB0\n  dsmr_version: 5\n")
    )
    assert numbered.source.dsmr_version == "5"  # type: ignore[union-attr]
    assert load(write(tmp_path, "source:\n  unit: kw\n")).source.unit == "kW"  # type: ignore[union-attr]


# -- topics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("mqtt:\n  state_topic: st/#\n", "mqtt.state_topic"),
        ("mqtt:\n  availability_topic: p1evse/+\n", "mqtt.availability_topic"),
        ("openevse:\n  base_topic: openevse/#\n", "openevse.base_topic"),
        ("homeassistant:\n  prefix: ha/+\n", "homeassistant.prefix"),
    ],
)
def test_wildcards_are_refused_where_one_topic_is_meant(
    tmp_path: Path, text: str, key: str
) -> None:
    [problem] = problems(write(tmp_path, text))
    assert problem.startswith(f"{key} = ")
    assert "wildcard filter" in problem


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("source:\n  delivered_topic: rt/sw/#\n", "source.delivered_topic"),
        ("source:\n  returned_topic: a/+/+/b\n", "source.returned_topic"),
        ("source:\n  phase_voltage_topics: [v/l+]\n", "source.phase_voltage_topics.0"),
        ("source:\n  type: mqtt_value\n  topic: a/#/b\n", "source.topic"),
        ("source:\n  type: mqtt_json\n  topic: tele/+/SENSOR/+\n", "source.topic"),
    ],
)
def test_a_source_reads_one_topic_or_one_per_site(tmp_path: Path, text: str, key: str) -> None:
    """A `+` level captures a fleet's site id; any other wildcard would mix meters."""
    [problem] = problems(write(tmp_path, text))
    assert problem.startswith(f"{key} = ")
    assert "a topic to read from is exact, or has one '+' as a whole level" in problem


def test_topics_outside_mqtts_limits_are_refused(tmp_path: Path) -> None:
    long = "a" * 70_000
    [problem] = problems(write(tmp_path, f"openevse:\n  grid_ie_topic: {long}\n"))
    assert "a topic is at most 65535 bytes, this one has 70000" in problem
    assert len(problem) < 300  # the value is shortened, not printed whole
    [problem] = problems(write(tmp_path, "openevse:\n  grid_ie_topic: $SYS/p1\n"))
    assert "topics starting with '$' are the broker's own" in problem
    [problem] = problems(write(tmp_path, 'mqtt:\n  state_topic: "a\\0b"\n'))
    assert "U+0000" in problem


# -- duplicate keys -----------------------------------------------------------------------


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  port: 1883\n  host: nas\n  port: 1884\nweb:\n  listen: ''\n")
    assert problems(path) == [f"{path} line 4: mqtt.port is set twice (first on line 2); keep one"]
    path = write(tmp_path, "mqtt:\n  port: 1883\nmqtt:\n  host: nas\n")
    assert problems(path) == [f"{path} line 3: mqtt is set twice (first on line 1); keep one"]


# -- messages -----------------------------------------------------------------------------


def test_a_bare_port_for_listen_says_what_is_meant(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "web:\n  listen: 8080\n"))
    assert problem.startswith("web.listen = 8080: expected host:port, got only a port")
    assert "127.0.0.1:8080 serves this machine, 0.0.0.0:8080 the network" in problem


def test_a_value_where_a_section_belongs_names_its_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt: 127.0.0.1\n")
    [problem] = problems(path)
    assert problem.startswith("mqtt = '127.0.0.1': expected a section of keys (host, port, ")
    assert "MqttSettings" not in problem
    assert problem.endswith(f"({path} line 1)")
    [problem] = problems(write(tmp_path, "source: dsmr\n"))
    assert "expected a section of keys" in problem


def test_a_misspelt_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P1EVSE_MQQT__HOST", "nas")
    [problem] = problems()
    assert problem.startswith("mqqt: unknown key; did you mean 'mqtt'?")
    assert problem.endswith("(from environment variable P1EVSE_MQQT__HOST)")


def test_a_short_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P1EVSE_WEB__TOKEN", "ab")
    [problem] = problems()
    assert problem.startswith(
        f"web.token = '**********': a token needs at least {MIN_TOKEN_CHARS} characters, "
        "this one has 2"
    )
    assert "'ab'" not in problem


def test_an_env_list_that_is_not_json_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P1EVSE_SOURCE__PHASE_VOLTAGE_TOPICS", '["v/1", ')
    [problem] = problems()
    assert problem.startswith("source.phase_voltage_topics")
    assert "P1EVSE_SOURCE__PHASE_VOLTAGE_TOPICS" in problem


INTEGER = "Input should be a valid integer, unable to parse string as an integer"
NUMBER = "Input should be a valid number, unable to parse string as a number"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt:\n  port: true\n", f"mqtt.port = 'true': {INTEGER}"),
        ("publish:\n  interval: yes\n", f"publish.interval = 'true': {NUMBER}"),
        ("publish:\n  reserve_w: false\n", f"publish.reserve_w = 'false': {INTEGER}"),
        ("fleet:\n  evict_after: true\n", f"fleet.evict_after = 'true': {NUMBER}"),
    ],
)
def test_true_or_false_is_not_a_number(tmp_path: Path, text: str, expected: str) -> None:
    """As from the environment: pydantic alone would take true for 1."""
    path = write(tmp_path, text)
    assert problems(path) == [f"{expected} ({path} line 2)"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("publish:\n  interval: .nan\n", "publish.interval = nan"),
        ("publish:\n  stale_after: .inf\n", "publish.stale_after = inf"),
        ("publish:\n  max_power_w: -.inf\n", "publish.max_power_w = -inf"),
        ("publish:\n  reserve_w: .nan\n", "publish.reserve_w = nan"),
        ("publish:\n  pair_window: 1.0e+999\n", "publish.pair_window = inf"),
        ("fleet:\n  evict_after: .nan\n", "fleet.evict_after = nan"),
    ],
)
def test_nan_or_infinity_is_not_a_finite_number(tmp_path: Path, text: str, shown: str) -> None:
    """Not a bound's message ("less than or equal to 300"), which NaN fails too."""
    path = write(tmp_path, text)
    assert problems(path) == [f"{shown}: Input should be a finite number ({path} line 2)"]


def test_nan_or_infinity_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P1EVSE_PUBLISH__INTERVAL", "NaN")
    monkeypatch.setenv("P1EVSE_WEB__HEADER_TIMEOUT", "infinity")
    assert problems() == [
        "publish.interval = 'NaN': Input should be a finite number "
        "(from environment variable P1EVSE_PUBLISH__INTERVAL)",
        "web.header_timeout = 'infinity': Input should be a finite number "
        "(from environment variable P1EVSE_WEB__HEADER_TIMEOUT)",
    ]


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("P1EVSE_MQTT__HOST", "mqtt.host"),
        ("P1EVSE_MQTT__PORT", "mqtt.port"),
        ("P1EVSE_PUBLISH__INTERVAL", "publish.interval"),
        ("P1EVSE_SOURCE__UNIT", "source.unit"),
        ("P1EVSE_MQTT__TLS__INSECURE", "mqtt.tls.insecure"),
    ],
)
def test_an_empty_variable_for_a_key_that_cannot_be_off_says_so(
    monkeypatch: pytest.MonkeyPatch, variable: str, key: str
) -> None:
    """Empty is off (`P1EVSE_WEB__LISTEN=`); a key that has no off refuses it."""
    monkeypatch.setenv(variable, "")
    [problem] = problems()
    assert problem.startswith(f"{key}: empty, but this key needs a value (")
    assert problem.endswith(
        f"); leave it out for its default (from environment variable {variable})"
    )


def test_an_empty_value_in_the_file_says_so_too(tmp_path: Path) -> None:
    path = write(tmp_path, "publish:\n  on_stale:\n")
    assert problems(path) == [
        "publish.on_stale: empty, but this key needs a value (Input should be 'pause', "
        f"'import' or 'none'); leave it out for its default ({path} line 2)"
    ]


@pytest.mark.parametrize("value", ["3", "yes please", "[a]"])
def test_a_bad_tls_value_names_the_key_not_a_class(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"mqtt:\n  tls: {value}\n")
    [problem] = problems(path)
    assert "Settings" not in problem
    assert problem.startswith("mqtt.tls")
    assert "expected true, false or a section of keys (ca_file, cert_file, key_file, " in problem
    assert problem.endswith(f"({path} line 2)")


def test_an_unknown_tls_key_lists_the_tls_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  tls:\n    cafile: /x\n")
    assert problems(path) == [
        "mqtt.tls.cafile: unknown key; did you mean 'ca_file'? Allowed: ca_file, cert_file, "
        f"key_file, insecure ({path} line 3)"
    ]


def test_a_variable_under_a_key_that_is_one_value_is_blamed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("P1EVSE_MQTT__PORT", "1885")
    monkeypatch.setenv("P1EVSE_MQTT__PORT__X", "1")
    assert problems() == [
        "P1EVSE_MQTT__PORT__X: mqtt.port is one value (set by P1EVSE_MQTT__PORT), it has no keys"
    ]
