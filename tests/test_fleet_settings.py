"""A fleet's configuration: the site id's `+` and `{site}`, each mistake named by its
key; a site's settings filled in; shards that split the site ids exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from p1evse.config import Settings, load
from p1evse.errors import ConfigError
from p1evse.fleet.settings import MAX_SITES_FILE_BYTES, Shard, parse_shard
from p1evse.settings import with_site

FLEET = """\
source:
  delivered_topic: dsmr/+/reading/electricity_currently_delivered
  returned_topic: dsmr/+/reading/electricity_currently_returned
openevse:
  grid_ie_topic: p1evse/{site}/grid_ie
  base_topic: openevse/{site}
  deadman: false
mqtt:
  state_topic: p1evse/{site}/state
  client_id: p1evse-a
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "p1evse.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    return [problem.replace(str(path), "FILE") for problem in caught.value.problems]


def test_a_fleet_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "p1evse.yaml"
    path.write_text(FLEET + "fleet:\n  shard: 1/4\n  max_sites: 500\n")
    settings = load(path)
    assert settings.is_fleet()
    assert settings.fleet.shard == Shard(1, 4)
    assert settings.fleet.max_sites == 500
    assert not load(None).is_fleet()


def test_every_topic_of_a_site_needs_its_id(tmp_path: Path) -> None:
    text = """\
source:
  delivered_topic: dsmr/+/reading/electricity_currently_delivered
  returned_topic: dsmr/+/reading/electricity_currently_returned
"""
    assert problems(tmp_path, text) == [  # defaults, set nowhere: no line to point at
        "mqtt.state_topic = 'p1evse/state' has no {site}: with a '+' in the source's topics "
        "(a fleet) each site needs its own, such as 'p1evse/{site}/state'",
        "openevse.grid_ie_topic = 'p1evse/grid_ie' has no {site}: with a '+' in the source's "
        "topics (a fleet) each site needs its own, such as 'p1evse/{site}/grid_ie'",
        "openevse.base_topic = 'openevse' has no {site}: with a '+' in the source's topics "
        "(a fleet) each site needs its own, such as 'openevse/{site}'",
        "openevse.deadman = true: the dead-man's switch is a broker connection per charger, "
        "which a fleet does not have; set it to false",
    ]
    [problem] = problems(tmp_path, FLEET.replace("openevse/{site}", "openevse"))
    assert problem.endswith("such as 'openevse/{site}' (FILE line 6)")


def test_a_default_that_breaks_a_rule_is_blamed_on_no_other_key_of_its_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P1EVSE_MQTT__CLIENT_ID", "p1evse-fleet")  # mqtt's other keys set
    text = FLEET.replace("mqtt:\n  state_topic: p1evse/{site}/state\n", "mqtt:\n  port: 1883\n")
    [problem] = problems(tmp_path, text)
    assert problem == (
        "mqtt.state_topic = 'p1evse/state' has no {site}: with a '+' in the source's topics "
        "(a fleet) each site needs its own, such as 'p1evse/{site}/state'"
    )


def test_a_fleet_needs_every_source_topic_to_capture_and_mqtt_to_the_chargers(
    tmp_path: Path,
) -> None:
    text = FLEET.replace("dsmr/+/reading/electricity_currently_returned", "dsmr/returned")
    [problem] = problems(tmp_path, text)
    assert problem.startswith("source = 'dsmr/returned' has no '+' level")
    text = FLEET.replace("  deadman: false\n", "  deadman: false\n  transport: http\n")
    text = text.replace("openevse:\n", "openevse:\n  url: http://openevse.local\n")
    [problem] = problems(tmp_path, text)
    assert problem.startswith("openevse.transport = 'http': a fleet feeds its chargers over MQTT")
    text = FLEET + "homeassistant:\n  discovery: true\n"
    [problem] = problems(tmp_path, text)
    assert problem.startswith("homeassistant.discovery = true: not available in a fleet yet")


def test_a_site_id_without_a_fleet_and_fleet_keys_without_one_are_refused(
    tmp_path: Path,
) -> None:
    [problem] = problems(tmp_path, "openevse:\n  grid_ie_topic: p1evse/{site}/grid_ie\n")
    assert problem == (
        "openevse.grid_ie_topic = 'p1evse/{site}/grid_ie': {site} is a fleet's site id, taken "
        "from a '+' level of the source's topics, and they have none (FILE line 2)"
    )
    [problem] = problems(tmp_path, "fleet:\n  max_sites: 10\n")
    assert problem.startswith("fleet = set, but its keys are for many meters")
    assert problem.endswith("(FILE line 1)")


def test_a_site_is_stale_before_it_is_let_go(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, FLEET + "fleet:\n  evict_after: 30\n")
    assert problem == (
        "fleet.evict_after = 30 s: must be longer than publish.stale_after (30 s); a site is "
        "stale before it is let go (FILE line 12)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2/2", "I of I/N goes from 0 to N-1 = 1, got 2"),
        ("1/0", "N of I/N goes from 1 to 1000000, got 0"),
        ("0/1000001", "N of I/N goes from 1 to 1000000, got 1000001"),
        ("0/" + "9" * 30, "expected I/N"),
        ("a/b", "expected I/N"),
        ("1", "expected I/N"),
    ],
)
def test_a_shard_is_i_of_n(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shard(text)
    assert parse_shard(" 0 / 3 ") == Shard(0, 3)
    assert parse_shard("999999/1000000") == Shard(999_999, 1_000_000)
    assert parse_shard("") is None


def test_the_shards_split_the_site_ids_exactly_and_evenly() -> None:
    sites = [f"home-{n}" for n in range(20_000)]
    shards = [Shard(i, 4) for i in range(4)]
    owners = [[shard for shard in shards if shard.owns(site)] for site in sites]
    assert all(len(owner) == 1 for owner in owners)
    for shard in shards:
        share = sum(owner == [shard] for owner in owners) / len(sites)
        assert 0.23 < share < 0.27


def test_a_sites_settings_have_its_id_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "p1evse.yaml"
    path.write_text(FLEET + "  password: s3cret\n")
    template: Settings = load(path)
    site = with_site(template, "h-7")
    assert site.source.subscriptions() == [
        "dsmr/h-7/reading/electricity_currently_delivered",
        "dsmr/h-7/reading/electricity_currently_returned",
    ]
    assert site.openevse.grid_ie_topic == "p1evse/h-7/grid_ie"
    assert site.openevse.claim_topic == "openevse/h-7/claim/set"
    assert site.mqtt.state_topic == "p1evse/h-7/state"
    assert isinstance(site.mqtt.password, SecretStr)
    assert site.mqtt.password.get_secret_value() == "s3cret"
    assert site.publish is template.publish  # nothing to fill: not copied
    assert template.openevse.grid_ie_topic == "p1evse/{site}/grid_ie"  # untouched


@pytest.mark.parametrize(
    ("shard", "message"),
    [
        ("4/4", "argument --shard: I of I/N goes from 0 to N-1 = 3, got 4"),
        ("", "argument --shard: expected I/N (this process is shard I of N), got ''"),
    ],
)
def test_run_checks_its_shard_from_the_command_line_as_its_own(
    tmp_path: Path, shard: str, message: str
) -> None:
    """Never blamed on the file, which has a shard of its own (and an empty one is no
    shard at all, not "every site")."""
    path = tmp_path / "p1evse.yaml"
    path.write_text(FLEET + "fleet:\n  shard: 0/2\n")
    result = subprocess.run(
        [sys.executable, "-m", "p1evse", "run", "-c", str(path), "--shard", shard],
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "line" not in result.stderr


@pytest.mark.parametrize(
    ("listing", "message"),
    [
        ("# nobody yet\n\n", "lists no site id (one a line)"),
        (b"h1\n\xff\n", "is no UTF-8 text"),
        (None, "is no regular file"),
    ],
)
def test_a_sites_file_that_lists_no_sites_is_refused(
    tmp_path: Path, listing: str | bytes | None, message: str
) -> None:
    """An empty list would serve every site; a device would be read for ever."""
    path = tmp_path / "sites.txt"
    if isinstance(listing, str):
        path.write_text(listing)
    elif isinstance(listing, bytes):
        path.write_bytes(listing)
    else:
        path = Path("/dev/zero")
    [problem] = problems(tmp_path, FLEET + f"fleet:\n  sites_file: {path}\n")
    assert problem.startswith(f"fleet: sites_file: {path} {message}")


def test_a_shared_subscription_in_a_topic_is_refused_with_what_to_use(tmp_path: Path) -> None:
    text = FLEET.replace("dsmr/+/reading/electricity_currently_delivered", "$share/g/dsmr/+/d")
    [problem] = problems(tmp_path, text)
    assert problem.startswith("source.delivered_topic = '$share/g/dsmr/+/d': the source's topics")
    assert "set fleet.share_group" in problem
    assert problem.endswith("(FILE line 2)")


def test_a_share_group_loads_on_the_users_word_that_the_broker_keeps_meters_apart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p1evse.yaml"
    path.write_text(FLEET + "fleet:\n  share_group: p1evse\n  share_sticky: true\n")
    fleet = load(path).fleet
    assert (fleet.share_group, fleet.share_sticky) == ("p1evse", True)


def test_a_share_group_without_a_sticky_broker_is_refused_with_why(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, FLEET + "fleet:\n  share_group: p1evse\n")
    assert problem.startswith("fleet.share_group = 'p1evse': the broker must keep each meter's")
    assert "fleet.share_sticky: true" in problem
    assert "hash_clientid" in problem
    assert problem.endswith("(FILE line 12)")
    # a single-topic source too: round robin deals one meter's readings to two processes
    single = FLEET.replace(
        "  delivered_topic: dsmr/+/reading/electricity_currently_delivered\n"
        "  returned_topic: dsmr/+/reading/electricity_currently_returned\n",
        "  type: mqtt_value\n  topic: meters/+/power\n",
    )
    [problem] = problems(tmp_path, single + "fleet:\n  share_group: p1evse\n")
    assert problem.startswith("fleet.share_group = 'p1evse': the broker must keep")


@pytest.mark.parametrize(
    ("keys", "wanted"),
    [
        ("  share_sticky: true\n", ["fleet.share_sticky = true, but fleet.share_group is not set"]),
        (
            "  share_group: a/b\n  share_sticky: true\n",
            ["fleet.share_group = 'a/b': no group name"],
        ),
        (
            "  share_group: g\n  share_sticky: true\n  membership: true\n  sites: [h1]\n",
            [
                "fleet.membership = true, together with fleet.share_group ('g')",
                "fleet.sites = 1 listed, together with fleet.share_group ('g')",
            ],
        ),
        (
            "  share_group: g\n  share_sticky: true\npublish:\n  interval: 15\n",
            ["publish.stale_after = 30 s: with fleet.share_group it must be longer than twice"],
        ),
        (
            "  share_group: g\n  share_sticky: true\n  shard: 0/2\n",
            ["fleet.shard = 0/2, together with fleet.share_group ('g')"],
        ),
    ],
)
def test_share_keys_that_do_not_go_together_are_named(
    tmp_path: Path, keys: str, wanted: list[str]
) -> None:
    found = problems(tmp_path, FLEET + "fleet:\n" + keys)
    assert len(found) == len(wanted)
    for problem, start in zip(found, wanted, strict=True):
        assert problem.startswith(start), problem


@pytest.mark.parametrize(
    "keys",
    ["  membership: true\n", "  shard: 0/2\n", "  share_group: g\n  share_sticky: true\n"],
)
def test_a_process_of_many_needs_a_client_id_that_can_name_it(tmp_path: Path, keys: str) -> None:
    text = FLEET.replace("client_id: p1evse-a", "client_id: p1evse a/b") + "fleet:\n" + keys
    [problem] = problems(tmp_path, text)
    assert problem.startswith(
        "mqtt.client_id = 'p1evse a/b': in a fleet of many processes it names this one"
    )
    # the default would be every process's: two with one id take turns on the broker
    text = FLEET.replace("  client_id: p1evse-a\n", "") + "fleet:\n" + keys
    [problem] = problems(tmp_path, text)
    assert problem.startswith(
        "mqtt.client_id = not set: every process of a fleet of many needs its own, and the "
        "default ('p1evse') would be every one's"
    )


def test_a_sites_file_beyond_its_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "sites.txt"
    path.touch()
    os.truncate(path, MAX_SITES_FILE_BYTES + 1)  # sparse: no disk, all of it read
    [problem] = problems(tmp_path, FLEET + f"fleet:\n  sites_file: {path}\n")
    assert problem.startswith(f"fleet: sites_file: {path} is larger than 96 MiB")
