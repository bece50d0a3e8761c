from __future__ import annotations

import re
from pathlib import Path

import pytest

from p1evse.config import MAX_CONFIG_BYTES, Settings, load
from p1evse.errors import ConfigError
from p1evse.model import StaleAction
from p1evse.mqtt import MqttSettings
from p1evse.sources.p1 import P1Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("P1EVSE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p1evse.yaml"
    path.write_text(text)
    return path


def problems(path: Path | None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


def test_defaults_reproduce_the_original_script() -> None:
    settings = load(None)
    assert (settings.mqtt.host, settings.mqtt.port) == ("127.0.0.1", 1883)
    assert settings.source.type == "mqtt_split"
    assert settings.source.subscriptions() == [
        "dsmr/reading/electricity_currently_delivered",
        "dsmr/reading/electricity_currently_returned",
    ]
    assert settings.source.unit == "kW"
    assert settings.openevse.grid_ie_topic == "p1evse/grid_ie"
    assert settings.openevse.claim_topic == "openevse/claim/set"
    publish = settings.publish
    assert (publish.interval, publish.pair_window, publish.reserve_w) == (5, 0.5, 0)
    assert (publish.max_power_w, publish.stale_after, publish.on_stale) == (
        50_000,
        30,
        StaleAction.PAUSE,
    )
    assert publish.failsafe_import_w == 10_000
    assert settings.web.listen == "127.0.0.1:8080"


def test_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mqtt:\n  host: nas.local\n  port: 1884\n  tls: true\n"
        "source:\n  unit: W\npublish:\n  interval: 10\n  on_stale: import\n"
        "openevse:\n  grid_ie_topic: DS220/POWER1\nweb:\n  listen: null\n",
    )
    settings = load(path)
    assert settings.mqtt.host == "nas.local"
    assert settings.mqtt.port == 1884
    assert settings.mqtt.tls is not None
    assert settings.mqtt.tls.ca_file is None
    assert settings.source.unit == "W"
    assert settings.publish.on_stale is StaleAction.IMPORT
    assert settings.openevse.grid_ie_topic == "DS220/POWER1"
    assert settings.web.listen is None


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, "# nothing\n")) == Settings()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "mqtt:\n  port: 1884\n")
    monkeypatch.setenv("P1EVSE_MQTT__PORT", "1885")
    monkeypatch.setenv("P1EVSE_OPENEVSE__GRID_IE_TOPIC", "DS220/POWER1")
    monkeypatch.setenv("P1EVSE_WEB__LISTEN", "")
    monkeypatch.setenv("P1EVSE_SOURCE__UNIT", "W")
    monkeypatch.setenv("P1EVSE_PUBLISH__ON_STALE", "none")
    settings = load(path)
    assert settings.mqtt.port == 1885
    assert settings.openevse.grid_ie_topic == "DS220/POWER1"
    assert settings.web.listen is None
    assert settings.source.unit == "W"
    assert settings.publish.on_stale is StaleAction.NONE


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    settings = load(write(tmp_path, f"mqtt:\n  username: evse\n  password_file: {secret}\n"))
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_password_file_missing(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "mqtt:\n  password_file: /nonexistent/pw\n"))
    assert problem.startswith("mqtt: password_file: cannot read /nonexistent/pw")


def test_web_token_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "web-token"
    secret.write_text("page-t0ken-0123456789\n")
    settings = load(write(tmp_path, f"web:\n  listen: 0.0.0.0:8080\n  token_file: {secret}\n"))
    assert settings.web.token is not None
    assert settings.web.token.get_secret_value() == "page-t0ken-0123456789"
    assert "page-t0ken-0123456789" not in repr(settings)
    monkeypatch.setenv("P1EVSE_WEB__TOKEN", "env-t0ken-0123456789")
    monkeypatch.setenv("P1EVSE_WEB__LISTEN", "[::1]:9000")
    web = load(None).web
    assert web.token is not None
    assert web.token.get_secret_value() == "env-t0ken-0123456789"
    assert web.address == ("::1", 9000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web:\n  token: '  '\n", "web.token = '**********': a token needs at least 16 characters"),
        ("web:\n  token: ab\n", "web.token = '**********': a token needs at least 16 characters"),
        ("web:\n  token: a\n  token_file: /etc/hostname\n", "web: set token or token_file"),
        ("web:\n  token_file: /nonexistent/t\n", "web: token_file: cannot read /nonexistent/t"),
    ],
)
def test_bad_web_token(tmp_path: Path, text: str, expected: str) -> None:
    [problem] = problems(write(tmp_path, text))
    assert problem.startswith(expected)


def test_each_problem_names_key_value_allowed_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mqtt:\n  port: abc\n  prot: 3\nsource:\n  unit: MW\npublish:\n  on_stale: explode\n",
    )
    assert problems(path) == [
        f"mqtt.port = 'abc': Input should be a valid integer, unable to parse string as an "
        f"integer ({path} line 2)",
        "mqtt.prot: unknown key; did you mean 'port'? Allowed: host, port, username, password, "
        "password_file, tls, "
        f"client_id, keepalive, availability_topic, state_topic ({path} line 3)",
        f"source.unit = 'MW': Input should be 'kW' or 'W' ({path} line 5)",
        f"publish.on_stale = 'explode': Input should be 'pause', 'import' or 'none' "
        f"({path} line 7)",
    ]


def test_problem_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P1EVSE_MQTT__PORT", "99999")
    [problem] = problems(None)
    assert problem == (
        "mqtt.port = '99999': Input should be less than or equal to 65535 "
        "(from environment variable P1EVSE_MQTT__PORT)"
    )


def test_a_rule_between_keys_names_where_the_keys_it_names_were_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the first variable of the section, whatever it set."""
    monkeypatch.setenv("P1EVSE_PUBLISH__RESERVE_W", "100")
    path = write(tmp_path, "publish:\n  mode: steady\n  interval: 0\n")
    assert problems(path) == [
        "publish: mode steady needs an interval above 0: it holds each interval's mean "
        f"({path} line 2)"
    ]
    monkeypatch.setenv("P1EVSE_PUBLISH__MODE", "steady")
    monkeypatch.setenv("P1EVSE_PUBLISH__STEP_W", "50")
    assert problems(None) == [
        "publish: step_w (50 W) must be larger than band_w (80 W) "
        "(from environment variable P1EVSE_PUBLISH__STEP_W)"
    ]


def test_a_secret_read_from_a_file_is_blamed_on_the_files_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was blamed on the section's line, or on a variable that set another key of
    the section (P1EVSE_WEB__HOSTS)."""
    token = tmp_path / "token"
    token.write_text("short\n")
    monkeypatch.setenv("P1EVSE_WEB__HOSTS", "nas.local")
    path = write(tmp_path, f"web:\n  listen: 127.0.0.1:8080\n  token_file: {token}\n")
    [problem] = problems(path)
    assert problem.startswith("web.token = '**********': a token needs at least 16 characters")
    assert problem.endswith(f"({path} line 3)")
    monkeypatch.setenv("P1EVSE_WEB__TOKEN_FILE", str(token))
    [problem] = problems(None)
    assert problem.endswith("(from environment variable P1EVSE_WEB__TOKEN_FILE)")


def test_unknown_source_type(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  type: zigbee\n")
    [problem] = problems(path)
    assert problem == (
        "source.type = 'zigbee': unknown source type; expected one of 'mqtt_split', "
        "'mqtt_value', 'mqtt_json', 'mqtt_telegram', 'p1', 'homewizard' "
        f"({path} line 2)"
    )


def test_unknown_section(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "mqttt:\n  host: x\n"))
    assert problem.startswith(
        "mqttt: unknown key; did you mean 'mqtt'? Allowed: mqtt, source, publish, openevse, "
        "homeassistant, fleet, web, log"
    )


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  host: [a,\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path} line 3: not valid YAML")


def test_missing_file(tmp_path: Path) -> None:
    [problem] = problems(tmp_path / "nope.yaml")
    assert "cannot read the config file" in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 100_000, "not valid YAML: nested too deeply"),
        ("mqtt:\n  " + "a: {" * 5_000 + "\n", "not valid YAML: nested too deeply"),
        ("mqtt:\n  port: " + "1" * 5_000 + "\n", "not valid YAML: a value it cannot read"),
        ("log:\n  level: 2020-02-30\n", "not valid YAML: a value it cannot read"),
    ],
)
def test_hostile_yaml_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    [problem] = problems(path)
    assert problem.startswith(f"{path}: {expected}")
    assert len(problem) < 200 + len(str(path))


def test_a_config_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(MAX_CONFIG_BYTES + 1)  # sparse: no disk is written
    assert problems(path) == [f"{path}: larger than 1 MiB; a config file is a few kB"]
    path.write_text("# " + "x" * (MAX_CONFIG_BYTES - 3) + "\n")  # just at the limit
    assert load(path) == Settings()


@pytest.mark.timeout(10)
def test_aliases_are_read_once_however_often_they_are_used(tmp_path: Path) -> None:
    """Each level uses the one before twice: 2**40 keys if every use were walked."""
    levels = ["x0: &x0 {a: 1, b: 2}"]
    levels += [f"x{n}: &x{n} {{a: *x{n - 1}, b: *x{n - 1}}}" for n in range(1, 40)]
    path = write(tmp_path, "\n".join(levels) + "\n")
    found = problems(path)
    assert len(found) == 40
    assert found[39].startswith("x39: unknown key")
    assert found[39].endswith(f"({path} line 40)")


@pytest.mark.timeout(10)
def test_a_device_or_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert problems(Path("/dev/zero")) == [
        "/dev/zero: not a regular file (a character device); the config is a YAML file"
    ]
    assert problems(tmp_path) == [f"{tmp_path}: a directory, not a config file"]


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("openevse:\n  grid_ie_topic: openevse/grid\n", "under OpenEVSE's base topic"),
        ("openevse:\n  grid_ie_topic: openevse\n", "under OpenEVSE's base topic"),
        (
            "openevse:\n  grid_ie_topic: dsmr/reading/electricity_currently_returned\n",
            "p1evse would read its own output",
        ),
        ("openevse:\n  grid_ie_topic: p1evse/status\n", "mqtt.availability_topic as well"),
        ("openevse:\n  grid_ie_topic: p1evse/state\n", "is mqtt.state_topic as well"),
    ],
)
def test_feedback_loops_are_refused(tmp_path: Path, yaml_text: str, fragment: str) -> None:
    path = write(tmp_path, yaml_text)
    [problem] = problems(path)
    assert problem.startswith("openevse.grid_ie_topic = ")
    assert fragment in problem
    assert f"({path} line 2)" in problem or f"({path} line 4)" in problem


@pytest.mark.parametrize(
    ("yaml_text", "key", "fragment"),
    [
        (
            "openevse:\n  voltage: true\n  vrms_topic: p1evse/state\n",
            "openevse.vrms_topic",
            "is mqtt.state_topic as well",
        ),
        (
            "openevse:\n  deadman_topic: p1evse/state\n",
            "openevse.deadman_topic",
            "is mqtt.state_topic as well",
        ),
        (
            "mqtt:\n  availability_topic: dsmr/reading/electricity_currently_delivered\n",
            "mqtt.availability_topic",
            "p1evse would read its own output",
        ),
        (  # the key the file set is blamed, not the one left at its default
            "mqtt:\n  availability_topic: p1evse/state\n",
            "mqtt.availability_topic",
            "is mqtt.state_topic as well",
        ),
        (
            "mqtt:\n  state_topic: p1evse/deadman\n",
            "mqtt.state_topic",
            "is openevse.deadman_topic as well",
        ),
    ],
)
def test_outputs_that_share_a_topic_or_feed_an_input_are_refused(
    tmp_path: Path, yaml_text: str, key: str, fragment: str
) -> None:
    """The charger took the voltage, the state's JSON or the dead-man's marker that
    shared its feed's topic for grid power."""
    [problem] = problems(write(tmp_path, yaml_text))
    assert problem.startswith(f"{key} = ")
    assert fragment in problem


@pytest.mark.parametrize(
    "text",
    [
        # OpenEVSE: "if mqtt_live_pwr equals mqtt_grid_ie, one topic drives both"
        "openevse:\n  shaper: true\n  grid_ie_topic: house/grid\n  live_pwr_topic: house/grid\n",
        # online/offline is no feed: OpenEVSE reads nothing of it
        "mqtt:\n  availability_topic: openevse/p1evse\n",
    ],
)
def test_topics_that_may_be_shared_are_accepted(tmp_path: Path, text: str) -> None:
    load(write(tmp_path, text))  # refused before


def test_wildcard_output_topic_is_refused(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "openevse:\n  grid_ie_topic: p1evse/+\n"))
    assert "wildcard" in problem


@pytest.mark.parametrize(
    "text",
    [
        "publish:\n  interval: -1\n",
        "publish:\n  stale_after: 0.2\n",
        "web:\n  listen: localhost\n",
        "mqtt:\n  tls:\n    cert_file: /x\n",
        "mqtt:\n  password: a\n  password_file: /etc/hostname\n",
        "log:\n  level: loud\n",
        'mqtt:\n  client_id: "a\\0b"\n',  # the broker never answered its CONNECT
    ],
)
def test_bad_values_are_refused(tmp_path: Path, text: str) -> None:
    assert problems(write(tmp_path, text))


EXAMPLES = Path(__file__).parent.parent / "examples"


def test_example_config_is_valid_and_lists_the_defaults() -> None:
    assert load(EXAMPLES / "p1evse.yaml") == Settings()


def test_example_config_lists_every_key() -> None:
    """It says "every key with its default" and left out web.hosts, the _file keys and
    the fleet's section. A key may stand in a comment (the fleet's, the TLS ones)."""
    text = (EXAMPLES / "p1evse.yaml").read_text()
    sections = re.split(r"^#? ?(\w+):", text, flags=re.M)
    found = {name: body for name, body in zip(sections[1::2], sections[2::2], strict=True)}
    missing = [
        f"{section}.{key}"
        for section, field in Settings.model_fields.items()
        if section != "source"  # one source type here; the others have files of their own
        for key in getattr(field.annotation, "model_fields", {})
        if not re.search(rf"^\s*#?\s+{key}:", found.get(section, ""), flags=re.M)
    ]
    assert missing == []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_loads(path: Path) -> None:
    settings = load(path)
    assert settings.source.describe()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "source:\n  type: p1\n",
            "source.url: Field required (line 1)",
        ),
        (
            "source:\n  type: p1\n  url: COM3\n",
            "source.url = 'COM3': expected a serial device such as /dev/ttyUSB0 or "
            "tcp://host:port, got 'COM3' (line 3)",
        ),
        (
            "source:\n  type: p1\n  url: tcp://dongle:99999\n",
            "source.url = 'tcp://dongle:99999': expected a serial device such as /dev/ttyUSB0 "
            "or tcp://host:port, got 'tcp://dongle:99999' (line 3)",
        ),
        (
            "source:\n  type: p1\n  url: /dev/ttyUSB0\n  dsmr_version: 6\n",
            "source.dsmr_version = 6: Input should be '2.2', '4', '4+', '5', '5B', '5L', '5S', "
            "'Q3D', 'ISKRA_IE', '5EONHU', 'MSn' or 'SAGEMCOM_T210_D_R' (line 4)",
        ),
        (
            "source:\n  type: p1\n  url: /dev/ttyUSB0\n  dsmr_version: MSn\n",
            "source: dsmr_version MSn sends encrypted telegrams: set decryption_key (from the "
            "grid operator) (line 4)",
        ),
        (
            "source:\n  type: p1\n  url: /dev/ttyUSB0\n  decryption_key: abc\n",
            "source.decryption_key = '**********': expected 32 hexadecimal digits (a 16-byte "
            "key) (line 4)",
        ),
        (
            "source:\n  type: mqtt_value\n",
            "source.topic: Field required (line 1)",
        ),
        (
            "source:\n  type: mqtt_value\n  topic: t\n  unit: MW\n",
            "source.unit = 'MW': Input should be 'kW' or 'W' (line 4)",
        ),
        (
            "source:\n  type: mqtt_json\n  power_field: p\n  import_field: i\n",
            "source: set power_field or import_field/export_field, not both (line 3)",
        ),
        (
            "source:\n  type: mqtt_json\n  scale: 0\n",
            "source.scale = 0: Input should be greater than 0 (line 3)",
        ),
        (
            "source:\n  type: mqtt_telegram\n  dsmr_version: SAGEMCOM_T210_D_R\n",
            "source.dsmr_version = 'SAGEMCOM_T210_D_R': an MQTT topic carries the decrypted "
            "telegram text: use the meter's unencrypted layout (5L for a Smarty), or the p1 "
            "source with decryption_key (line 3)",
        ),
        (
            "source:\n  type: homewizard\n  host: hw.local\n  interval: 0.1\n",
            "source.interval = 0.1: Input should be greater than or equal to 0.5 (line 4)",
        ),
        (
            "source:\n  type: homewizard\n  host: hw.local\n  api: 2\n  token: x\n",
            "source: api 2: the device's certificate is not publicly trusted; set ca_file to "
            "HomeWizard's CA certificate, or verify: false (line 4)",
        ),
        (
            "source:\n  type: homewizard\n  host: 192.168.1.50:8080\n",
            "source.host = '192.168.1.50:8080': a host name or an address, without a port "
            "(the port is a key of its own: port); brackets only around an IPv6 address (line 3)",
        ),
        (
            "source:\n  type: homewizard\n  host: hw.local\n  api: 2\n  token: ' '\n"
            "  verify: false\n",
            "source: api 2 needs token (or token_file): the device issues it (line 4)",
        ),
        (
            "source:\n  type: homewizard\n  host: hw.local\n  api: 3\n",
            "source.api = 3: Input should be 1 or 2 (line 4)",
        ),
        (
            "source:\n  delivered_topic: a\n  phase_voltage_topics: [a]\n",
            "source: each topic carries one value; used more than once: ['a'] (line 1)",
        ),
        (
            "source:\n  type: homewizard\n  hots: x\n",
            "source.hots: unknown key; did you mean 'host'? Allowed: type, host, port, api, token, "
            "token_file, "
            "ca_file, verify, server_name, interval, timeout (line 3)",
        ),
    ],
)
def test_source_problems_name_key_value_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = expected.replace("(line ", f"({path} line ")
    assert message in problems(path)


def test_a_non_mqtt_source_subscribes_to_nothing(tmp_path: Path) -> None:
    settings = load(write(tmp_path, "source:\n  type: p1\n  url: tcp://127.0.0.1:2323\n"))
    assert settings.source.subscriptions() == []
    assert getattr(settings.source, "unit", None) is None


def test_unknown_source_key_lists_the_source_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n  delivered: x\n")
    assert problems(path) == [
        "source.delivered: unknown key; did you mean 'delivered_topic'? Allowed: type, "
        "delivered_topic, returned_topic, unit, "
        "phase_delivered_topics, phase_returned_topics, phase_voltage_topics "
        f"({path} line 2)"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("openevse:\n  transport: http\n", "transport http needs url"),
        ("openevse:\n  transport: https\n", "Input should be 'mqtt' or 'http'"),
        ("openevse:\n  transport: http\n  url: openevse.local\n", "like http://openevse.local"),
        (
            "openevse:\n  transport: http\n  url: http://admin:pw@openevse.local\n",
            "put the login in openevse.username",
        ),
        (
            "openevse:\n  transport: http\n  url: http://openevse.local/x?y=1\n",
            "has no '?' or '#' part",
        ),
        ("openevse:\n  transport: http\n  url: htp://admin:pw@x\n", "put the login in"),
        ("openevse:\n  transport: http\n  url: 'http://admin:pw#1@x'\n", "put the login in"),
        ("openevse:\n  transport: http\n  url: http://admin:pw/1@x\n", "put the login in"),
        ("openevse:\n  transport: http\n  url: http://openevse.local:abc\n", "a number from 1"),
        ("openevse:\n  claim_client_id: 0\n", "greater than or equal to 1"),
        # the firmware reads the id as a signed 32-bit number: past it every id is one
        ("openevse:\n  claim_client_id: 4294856753\n", "less than or equal to 2147483646"),
    ],
)
def test_openevse_http_settings_are_checked(tmp_path: Path, text: str, fragment: str) -> None:
    [problem] = problems(write(tmp_path, text))
    assert problem.startswith("openevse")
    assert fragment in problem
    assert ":pw" not in problem  # the password is not shown back


def test_openevse_http_settings(tmp_path: Path) -> None:
    secret = tmp_path / "openevse-password"
    secret.write_text("s3cret\n")
    path = write(
        tmp_path,
        "openevse:\n  transport: http\n  url: http://openevse.local/\n  username: admin\n"
        f"  password_file: {secret}\n",
    )
    openevse = load(path).openevse
    assert openevse.url == "http://openevse.local"
    assert openevse.password is not None
    assert openevse.password.get_secret_value() == "s3cret"


def test_shaper_topic_is_checked_for_feedback_loops(tmp_path: Path) -> None:
    path = write(tmp_path, "openevse:\n  shaper: true\n  live_pwr_topic: openevse/live_pwr\n")
    [problem] = problems(path)
    assert problem.startswith("openevse.live_pwr_topic = 'openevse/live_pwr' is under")
    assert f"({path} line 3)" in problem


def test_http_transport_publishes_no_topics(tmp_path: Path) -> None:
    # grid_ie_topic is unused over HTTP, so it cannot loop back
    path = write(
        tmp_path,
        "openevse:\n  transport: http\n  url: http://127.0.0.1\n  grid_ie_topic: openevse/x\n",
    )
    assert load(path).openevse.transport == "http"


def test_discovery_needs_the_state_topic(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  state_topic: null\nhomeassistant:\n  discovery: true\n")
    [problem] = problems(path)
    assert "homeassistant.discovery reads p1evse's state topic" in problem


def test_vrms_topic_is_checked_for_feedback_loops(tmp_path: Path) -> None:
    path = write(tmp_path, "openevse:\n  voltage: true\n  vrms_topic: openevse/vrms\n")
    [problem] = problems(path)
    assert problem.startswith("openevse.vrms_topic = 'openevse/vrms' is under")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt:\n  password: 123456\n", "mqtt.password = '**********': expected text, but"),
        ("mqtt:\n  host: 10\n", "mqtt.host = 10: expected text, but YAML read a number"),
        ("mqtt:\n  client_id: true\n", "mqtt.client_id = True: expected text, but"),
        ("mqtt:\n  port: 2020-02-28\n", "mqtt.port = '2020-02-28': Input should be"),
    ],
)
def test_a_value_yaml_reads_as_no_text_is_told_to_be_quoted(
    tmp_path: Path, text: str, expected: str
) -> None:
    [problem] = problems(write(tmp_path, text))
    assert problem.startswith(expected)
    assert "123456" not in problem


@pytest.mark.parametrize(
    ("text", "name"), [("~: x\n", "~"), ("true: 1\n", "true"), ("1: 2\n", "1")]
)
def test_a_top_level_key_that_is_not_text_is_named(tmp_path: Path, text: str, name: str) -> None:
    """It was a traceback and exit 1 (`keywords must be strings`)."""
    path = write(tmp_path, text)
    assert problems(path) == [f"{path} line 1: {name!r} is not a section name (mqtt:, source:, …)"]


def test_a_section_whose_keys_are_all_commented_out_is_one_of_defaults(tmp_path: Path) -> None:
    """What a copy of examples/p1evse.yaml with its changes undone looks like."""
    path = write(tmp_path, "publish:\n  # interval: 5\nmqtt:\n  port: 1884\n")
    assert load(path) == Settings(mqtt={"port": 1884})


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("192.168.1.10:1883", "without a port"),
        ("mqtt://localhost", "without scheme, login or path"),
        ("user@broker", "without scheme, login or path"),
        ("'[broker.lan]'", "brackets only around an IPv6 address"),
        ("'[::1'", "brackets only around an IPv6 address"),
        ("' 127.0.0.1'", "no spaces"),
        ('"broker\\0"', "no spaces or control characters"),
    ],
)
def test_a_broker_host_with_more_than_the_host_is_refused(
    tmp_path: Path, host: str, fragment: str
) -> None:
    """Each was accepted and failed only when connecting ("cannot resolve")."""
    [problem] = problems(write(tmp_path, f"mqtt:\n  host: {host}\n"))
    assert problem.startswith("mqtt.host = ")
    assert fragment in problem


@pytest.mark.parametrize(
    ("host", "stored"),
    [("'[::1]'", "::1"), ("'fe80::0001'", "fe80::1"), ("'fe80::1%eth0'", "fe80::1%eth0")],
)
def test_an_ipv6_broker_address_may_be_in_brackets(tmp_path: Path, host: str, stored: str) -> None:
    assert load(write(tmp_path, f"mqtt:\n  host: {host}\n")).mqtt.host == stored


def test_an_ipv6_broker_is_written_in_brackets_where_a_port_follows() -> None:
    """`broker ::1:18870` in check's lines and `mqtt://::1:1883` in /metrics."""
    assert MqttSettings(host="::1").endpoint == "mqtt://[::1]:1883"


def test_a_topic_the_charger_reads_is_kept_as_written(tmp_path: Path) -> None:
    """A grid_ie topic copied from the charger's settings with a trailing '/' lost it, so
    the charger heard nothing; a base topic's trailing '/' is still dropped."""
    settings = load(
        write(tmp_path, "openevse:\n  grid_ie_topic: DS220/POWER1/\n  base_topic: openevse/\n")
    )
    assert settings.openevse.grid_ie_topic == "DS220/POWER1/"
    assert settings.openevse.base_topic == "openevse"
    [problem] = problems(write(tmp_path, "openevse:\n  base_topic: /\n"))
    assert "a topic prefix needs a level" in problem  # it was '//claim/set'


def test_a_key_merged_in_may_be_set_again_and_a_repeated_one_is_still_refused(
    tmp_path: Path,
) -> None:
    """YAML's merge key: the mapping's own key wins; it was refused as set twice."""
    text = "publish:\n  <<: {interval: 10, reserve_w: 50}\n  interval: 5\n"
    settings = load(write(tmp_path, text))
    assert (settings.publish.interval, settings.publish.reserve_w) == (5, 50)
    path = write(tmp_path, "publish:\n  <<: {interval: 10}\n  reserve_w: x\n")
    [problem] = problems(path)
    assert problem.endswith(f"({path} line 3)")  # the key's own line
    path = write(tmp_path, "publish:\n  <<: {interval: 10}\n  interval: 5\n  interval: 6\n")
    assert problems(path) == [
        f"{path} line 4: publish.interval is set twice (first on line 3); keep one"
    ]


@pytest.mark.parametrize(
    ("section", "key"),
    [("mqtt", "password"), ("web", "token"), ("openevse", "password")],
)
def test_an_empty_secret_file_is_refused(tmp_path: Path, section: str, key: str) -> None:
    """An empty password file logged in with '' (an empty HomeWizard token file was
    blamed on `api: 2`)."""
    empty = tmp_path / "secret"
    empty.write_text("\n")
    path = write(tmp_path, f"{section}:\n  {key}_file: {empty}\n")
    [problem] = problems(path)
    assert (
        problem
        == f"{section}: {key}_file: {empty} is empty; it holds the {key} itself ({path} line 2)"
    )


@pytest.mark.parametrize(("text", "name"), [("mqtt:\n  yes: x\n", "yes"), ("mqtt:\n  ~: x\n", "~")])
def test_a_key_that_is_not_text_in_a_section_is_named(tmp_path: Path, text: str, name: str) -> None:
    """It was 'mqtt.1 = True: Keys should be strings' on the section's line."""
    path = write(tmp_path, text)
    assert problems(path) == [f"{path} line 2: {name!r} is not a key name of mqtt"]


def test_an_emptied_fleet_section_is_no_fleet(tmp_path: Path) -> None:
    """As the example file has it: every key commented out. It was refused as a fleet
    section for a single meter."""
    assert load(write(tmp_path, "fleet:\n  # max_sites: 5\n")) == Settings()


def test_an_encrypted_meters_keys_may_come_from_files(tmp_path: Path) -> None:
    key = tmp_path / "p1-key"
    key.write_text("00112233445566778899AABBCCDDEEFF\n")
    text = "source:\n  type: p1\n  url: /dev/ttyUSB0\n  dsmr_version: MSn\n"
    source = load(write(tmp_path, f"{text}  decryption_key_file: {key}\n")).source
    assert isinstance(source, P1Settings)
    assert source.decryption_key is not None
    assert source.decryption_key.get_secret_value() == "00112233445566778899AABBCCDDEEFF"
