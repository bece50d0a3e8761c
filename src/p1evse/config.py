"""The configuration contract (DESIGN.md): one YAML file, every key overridable by
`P1EVSE_<SECTION>__<KEY>`, defaults that reproduce the original script's setup.

`load()` returns validated `Settings` or raises `ConfigError` with one line per problem
naming the key, the bad value, what is allowed, and where it came from (file line or
environment variable).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from paho.mqtt.client import topic_matches_sub
from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)

from p1evse.errors import ConfigError
from p1evse.fleet.settings import FleetSettings
from p1evse.settings import SITE_ID, SITE_ID_RULE, Section
from p1evse.site import SiteSettings
from p1evse.sources.build import SOURCE_TYPES
from p1evse.web.settings import WebSettings

# keys whose values never appear in an error message
SECRET_KEYS = frozenset({"password", "token", "decryption_key", "authentication_key"})
ENV_PREFIX = "P1EVSE_"
ENV_DELIMITER = "__"
CONFIG_PATH_VARIABLE = "P1EVSE_CONFIG"
# a file of every key is a few kB; the cap keeps a wrong path (a log, /dev/zero) out
MAX_CONFIG_BYTES = 1024 * 1024
FILE_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(SiteSettings):
    """The whole file: the one site's sections (every site's, in a fleet), the fleet's,
    the status page's and the log's."""

    fleet: FleetSettings = FleetSettings()
    web: WebSettings = WebSettings()
    log: LogSettings = LogSettings()

    def announced_on(self) -> str:
        """Where this process says "online" (retained; "offline" as its will): the
        availability topic, or a topic of its own in a fleet of many processes."""
        if self.is_fleet() and self.fleet.one_of_many():
            return self.fleet.announce_topic(self.mqtt.client_id)
        return self.mqtt.availability_topic

    def fleet_problems(self) -> list[tuple[str, str]]:
        """(key, problem) for the fleet's keys: they need a fleet, and a site is stale
        before it is let go."""
        if not self.is_fleet():
            if "fleet" in self.model_fields_set:
                return [
                    (
                        "fleet",
                        "set, but its keys are for many meters, whose source topics have a "
                        "'+' level for the site id; this source's have none",
                    )
                ]
            return []
        fleet = self.fleet
        problems = []
        if fleet.evict_after is not None and fleet.evict_after <= self.publish.stale_after:
            problems.append(
                (
                    "fleet.evict_after",
                    f"{fleet.evict_after:g} s: must be longer than publish.stale_after "
                    f"({self.publish.stale_after:g} s); a site is stale before it is let go",
                )
            )
        if fleet.membership and fleet.shard is not None:
            problems.append(
                (
                    "fleet.shard",
                    f"{fleet.shard}: with fleet.membership the live members share the sites; "
                    "a static shard is for fleets without it",
                )
            )
        problems.extend(_share_problems(fleet))
        if fleet.share_group is not None and self.publish.stale_after <= 2 * self.publish.interval:
            problems.append(
                (
                    "publish.stale_after",
                    f"{self.publish.stale_after:g} s: with fleet.share_group it must be longer "
                    f"than twice publish.interval ({self.publish.interval:g} s). A process that "
                    "lost a meter knows it by the new owner's values, one each interval, "
                    "before its stale guard would pause the charger",
                )
            )
        if fleet.one_of_many() and "client_id" not in self.mqtt.model_fields_set:
            problems.append(
                (
                    "mqtt.client_id",
                    f"not set: every process of a fleet of many needs its own, and the "
                    f"default ({self.mqtt.client_id!r}) would be every one's. Of two "
                    "connections with one client id a broker keeps only the newer; set "
                    "it in each process (P1EVSE_MQTT__CLIENT_ID=p1evse-a, …)",
                )
            )
        elif fleet.one_of_many() and SITE_ID.fullmatch(self.mqtt.client_id) is None:
            problems.append(
                (
                    "mqtt.client_id",
                    f"{self.mqtt.client_id!r}: in a fleet of many processes it names this "
                    f"one in a topic level: {SITE_ID_RULE}",
                )
            )
        return problems


def _share_problems(fleet: FleetSettings) -> list[tuple[str, str]]:
    """A broker that deals the meters among the processes must keep each meter on one
    of them: round robin (mosquitto's, and EMQX's default) deals one meter's readings,
    and the two halves of split topics, to different processes, and two processes would
    feed one charger."""
    if fleet.share_group is None:
        if fleet.share_sticky:
            return [("fleet.share_sticky", "true, but fleet.share_group is not set")]
        return []
    problems = []
    if not fleet.share_sticky:
        problems.append(
            (
                "fleet.share_group",
                f"{fleet.share_group!r}: the broker must keep each meter's messages on one "
                "process, and fleet.share_sticky: true says it does (EMQX: "
                "broker.shared_subscription_strategy = hash_clientid). Round "
                "robin, mosquitto's and EMQX's default, deals one meter's readings (and "
                "split topics' halves) to different processes, which would then both feed "
                "its charger; see docs/scaling.md",
            )
        )
    others = {
        "fleet.membership": "true" if fleet.membership else None,
        "fleet.shard": str(fleet.shard) if fleet.shard is not None else None,
        "fleet.sites": f"{len(fleet.sites)} listed" if fleet.sites else None,
    }
    problems.extend(
        (
            key,
            f"{given}, together with fleet.share_group ({fleet.share_group!r}): the broker "
            "deals the meters among the processes, so no other way of splitting them is taken",
        )
        for key, given in others.items()
        if given is not None
    )
    return problems


def load(path: Path | None, options: dict[str, Any] | None = None) -> Settings:
    """Read and validate the configuration; raise `ConfigError` listing every problem.
    `options`: sections of keys from the command line, over the file and environment."""
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    if path is not None:
        data, lines = _read_yaml(path)
    _merge(data, environment_overrides(os.environ))
    _merge(data, options or {})
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = [_describe(error, path, lines, os.environ) for error in exc.errors()]
        raise ConfigError(problems) from None
    rules = [*settings.site_id_problems(), *settings.fleet_problems(), *feedback_loops(settings)]
    if rules:
        raise ConfigError(
            [
                f"{key} = {problem}{_rule_origin(tuple(key.split('.')), path, lines, os.environ)}"
                for key, problem in rules
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
    paths = {
        name: tuple(name.upper().removeprefix(ENV_PREFIX).lower().split(ENV_DELIMITER))
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_PATH_VARIABLE
    }
    _refuse_keys_under_a_value(paths)
    for name, path in paths.items():
        *sections, key = path
        value = environ[name]
        node = overrides
        for section in sections:
            if not isinstance(node.get(section), dict):
                node[section] = {}
            node = node[section]
        node[key] = value or None
    return overrides


def _refuse_keys_under_a_value(paths: Mapping[str, tuple[str, ...]]) -> None:
    """`P1EVSE_MQTT__PORT=1884` beside `P1EVSE_MQTT__PORT__X=1`: one would silently win
    (or the error would blame the other); the second is the one at fault."""
    problems = [
        f"{inner}: {'.'.join(path)} is one value (set by {outer}), it has no keys"
        for outer, path in paths.items()
        for inner, under in paths.items()
        if len(under) > len(path) and under[: len(path)] == path
    ]
    if problems:
        raise ConfigError(sorted(problems))


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


# Two outputs that may share a topic: OpenEVSE's shaper reads the same value as divert
# ("if mqtt_live_pwr equals mqtt_grid_ie, one topic drives both"), sent once.
SHARED_OUTPUTS = frozenset({"openevse.grid_ie_topic", "openevse.live_pwr_topic"})


def feedback_loops(settings: Settings) -> list[tuple[str, str]]:
    """Rule 8: never publish where p1evse or OpenEVSE would read it back in, nor two
    kinds of message on one topic (the charger would take a voltage or a JSON document
    for grid power). Returns (key, problem) for every MQTT output topic that would: of
    two on one topic, the one the configuration set."""
    problems = []
    base = settings.openevse.base_topic
    availability = {"mqtt.availability_topic": settings.mqtt.availability_topic}
    outputs = settings.output_topics()
    first_key: dict[str, str] = {}
    for key, out in {**availability, **outputs}.items():
        problems += [
            (
                key,
                f"{out!r}: the source subscribes to {subscribed!r}; "
                "p1evse would read its own output",
            )
            for subscribed in settings.source.subscriptions()
            if topic_matches_sub(subscribed, out)
        ]
        if key in outputs and (out == base or out.startswith(base + "/")):
            problems.append(
                (
                    key,
                    f"{out!r} is under OpenEVSE's base topic {base!r}; OpenEVSE echoes its "
                    f"feeds under {base}/ and would feed itself",
                )
            )
        other = first_key.setdefault(out, key)
        if other != key and {other, key} != SHARED_OUTPUTS:
            blamed, named = (other, key) if _set_by_user(settings, other) else (key, other)
            problems.append(
                (blamed, f"{out!r} is {named} as well; each output needs a topic of its own")
            )
    return problems


def _set_by_user(settings: Settings, key: str) -> bool:
    """Whether the configuration set `section.key` (not left at its default)."""
    section, _, name = key.partition(".")
    return name in getattr(settings, section).model_fields_set


# a key is text; YAML's merge key (`<<: *defaults`) brings in another mapping's keys
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TEXT_TAG = "tag:yaml.org,2002:str"
SECTION_NAME = "a section name (mqtt:, source:, …)"


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    loader = yaml.SafeLoader(_read_text(path))
    lines: dict[tuple[str, ...], int] = {}
    problems: list[str] = []
    try:
        node = loader.get_single_node()
        # before the constructor merges `<<: *defaults` into the mappings that use it
        _collect_lines(node, (), lines, problems, set())
        data = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}{where}: not valid YAML: {problem}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: not valid YAML: nested too deeply"]) from None
    except (ValueError, OverflowError) as exc:  # a scalar Python cannot hold: 2020-02-30
        reason = str(exc).partition(";")[0]
        raise ConfigError([f"{path}: not valid YAML: a value it cannot read ({reason})"]) from None
    finally:
        loader.dispose()
    if data is None or node is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{path}: expected a mapping of sections (mqtt:, source:, …) at the top"]
        )
    # a section whose keys are all commented out is as if it were left out
    data = {key: value for key, value in data.items() if value is not None}
    if problems:
        raise ConfigError([f"{path} {problem}" for problem in problems])
    return data, lines


def _read_text(path: Path) -> str:
    """The file's text: a regular file (or a pipe) of at most `MAX_CONFIG_BYTES`."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError([f"{path}: a directory, not a config file"])
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            kind = FILE_KINDS.get(stat.S_IFMT(mode), "a special file")
            raise ConfigError([f"{path}: not a regular file ({kind}); the config is a YAML file"])
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        limit = MAX_CONFIG_BYTES // 2**20
        raise ConfigError([f"{path}: larger than {limit} MiB; a config file is a few kB"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason})"]) from None


def _collect_lines(
    node: yaml.Node | None,
    prefix: tuple[str, ...],
    lines: dict[tuple[str, ...], int],
    problems: list[str],
    seen: set[int],
) -> None:
    """Each key's line; a key given twice in one mapping is a mistake YAML would hide
    (the last one silently wins). A key merged in (`<<: *defaults`) is one the mapping
    may set again: it only gives a line to a key the mapping does not set. A mapping
    used again by an alias is walked once: its keys there are on its anchor's lines,
    and walking every use could take forever."""
    if not isinstance(node, yaml.MappingNode) or id(node) in seen:
        return
    seen.add(id(node))
    merged: list[yaml.Node] = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            many = isinstance(value_node, yaml.SequenceNode)
            merged += value_node.value if many else [value_node]
            continue
        line = key_node.start_mark.line + 1
        if key_node.tag != _TEXT_TAG:  # `1:`, `~:`, `yes:`, `[a]:`
            name = key_node.value if isinstance(key_node.value, str) else "a collection"
            what = f"a key name of {'.'.join(prefix)}" if prefix else SECTION_NAME
            problems.append(f"line {line}: {name!r} is not {what}")
            continue
        key = (*prefix, str(key_node.value))
        if key in lines:
            problems.append(
                f"line {line}: {'.'.join(key)} is set twice (first on line {lines[key]}); keep one"
            )
        lines[key] = line
        _collect_lines(value_node, key, lines, problems, seen)
    for mapping in merged:
        if isinstance(mapping, yaml.MappingNode):
            for key_node, _ in mapping.value:
                lines.setdefault((*prefix, str(key_node.value)), key_node.start_mark.line + 1)


# the password of a URL's user info: up to its last '@' (a password may hold / ? #)
_URL_PASSWORD = re.compile(r"(://[^/?#@:\s]*:)[^@\s]*@")


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
    elif error.get("input", "") is None and error["type"] != "missing":
        # empty is off (`P1EVSE_WEB__LISTEN=`), for a key that has one
        message = f"empty, but this key needs a value ({message}); leave it out for its default"
    elif error["type"] == "string_type" and isinstance(error.get("input"), int | float | date):
        # YAML read `password: 123456` as a number (a date, true): text needs quotes
        message = "expected text, but YAML read a number, date or true/false: put it in quotes"
    shown = "" if error["type"] in {"extra_forbidden", "missing"} else _show_input(error)
    if shown and loc and loc[-1] in SECRET_KEYS:
        shown = " = '**********'"
    if error["type"] == "union_tag_invalid":
        ctx = error["ctx"]
        loc = (*loc, "type")
        key, shown = ".".join(loc), f" = {ctx['tag']!r}"
        message = f"unknown source type; expected one of {ctx['expected_tags']}"
    origin = _error_origin(error, loc, message, path, lines, environ)
    return _URL_PASSWORD.sub(r"\1**********@", f"{key}{shown}: {message}{origin}")


def _error_origin(
    error: Mapping[str, Any],
    loc: tuple[str, ...],
    message: str,
    path: Path | None,
    lines: Mapping[tuple[str, ...], int],
    environ: Mapping[str, str],
) -> str:
    """Where the value that broke a rule came from. A rule between a section's keys is
    the section's error; the keys its message names say where to look first (else the
    section's first variable would be blamed, whatever it set)."""
    if error["type"] == "value_error":
        named = {
            found.start(): name
            for name in _allowed_keys(error["loc"])
            if (found := re.search(rf"\b{re.escape(name)}\b", message))
        }
        for _, name in sorted(named.items()):  # in the message's order
            origin = _origin((*loc, name), path, lines, environ, exact=True)
            if origin:
                return origin
    return _origin(loc, path, lines, environ)


def _rule_origin(
    loc: tuple[str, ...],
    path: Path | None,
    lines: Mapping[tuple[str, ...], int],
    environ: Mapping[str, str],
) -> str:
    """Where the key a rule between keys names was set: a key of a section only where it
    was set itself (one left at its default was set nowhere; the variable or line that
    set another key of its section is not to blame), a section anywhere below it."""
    leaf = loc[-1] in _allowed_keys(loc[:-1]) and not _allowed_keys(loc)
    return _origin(loc, path, lines, environ, exact=leaf)


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
    text = repr(value.isoformat() if isinstance(value, date) else value)
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
        # a section that can be off is `Section | None`
        options = (get_args(field.annotation) or (field.annotation,)) if field is not None else ()
        model = next(
            (kind for kind in options if isinstance(kind, type) and issubclass(kind, BaseModel)),
            None,
        )
    return [] if model is None else list(model.model_fields)


def _origin(
    loc: tuple[str, ...],
    path: Path | None,
    lines: Mapping[tuple[str, ...], int],
    environ: Mapping[str, str],
    *,
    exact: bool = False,
) -> str:
    """The variable or the file's line that set `loc` (or `<key>_file`, for a secret
    read from a file), else (unless `exact`) the nearest section above it that was set.
    A variable that set another key of that section is not to blame."""
    for depth in range(len(loc), len(loc) - 1 if exact else 0, -1):
        keys = [loc[:depth]]
        if depth == len(loc) and loc:
            keys.append((*loc[:-1], f"{loc[-1]}_file"))
        for key in keys:
            wanted = (ENV_PREFIX + ENV_DELIMITER.join(key)).upper()
            for name in environ:
                # an unknown section is named by the variables below it too
                below = depth == len(loc) and name.upper().startswith(wanted + ENV_DELIMITER)
                if name.upper() == wanted or below:
                    return f" (from environment variable {name})"
            if path is not None and key in lines:
                return f" ({path} line {lines[key]})"
    return ""
