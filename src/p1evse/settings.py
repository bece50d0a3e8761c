"""What every settings model shares: strictness, values given as text, secrets read from
files, and MQTT's rules for topics.

A neutral module (it imports pydantic only), so that the pipeline, sources and sinks can
define their own settings models without importing `config`, which assembles them.

Values often arrive as text: every key can be set from an environment variable, and YAML
reads `5` where a version `"5"` is meant. So, before validation, a section takes a list
as `a,b,c` or as JSON (`["a","b"]`), and a fixed choice (`kW`, `pause`, API `2`, DSMR
`5`) in any case and from a number or its text. Everything else is pydantic's own
(lax) parsing of numbers and booleans, but for true or false as a number, which is
refused as it is in a variable (pydantic would take true for 1).
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
import ssl
import types
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# MQTT 3.1.1 section 4.7.3: a topic is 1 to 65,535 bytes of UTF-8 without U+0000
MAX_TOPIC_BYTES = 65_535


class Section(BaseModel):
    """A settings section: unknown keys are errors, values never change once made, and
    a number is finite (NaN would otherwise fail a bound, with that bound's message)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        converted = dict(data)
        for key, value in data.items():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if field is not None:
                converted[key] = _coerce(field.annotation, value)
        return converted


SectionT = TypeVar("SectionT", bound=BaseModel)


def secrets_from_files(data: Any, *keys: str) -> Any:
    """For a section's raw input: `<key>_file: PATH` sets `<key>` to the file's text,
    without its line end (Docker and systemd secrets). For `mode="before"` validators."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key in keys:
        path = data.get(f"{key}_file")
        if path is None or path == "":
            continue
        if data.get(key) is not None:
            raise ValueError(f"set {key} or {key}_file, not both")
        try:
            data[key] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{key}_file: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{key}_file: {path} is not UTF-8 text") from None
        if not data[key].strip():
            raise ValueError(f"{key}_file: {path} is empty; it holds the {key} itself")
    return data


# -- values given as text -----------------------------------------------------------------


def _coerce(annotation: Any, value: Any) -> Any:
    options = _options(annotation)
    if isinstance(value, bool) and bool not in options and (int in options or float in options):
        return str(value).lower()  # refused as the same text from a variable (pydantic: 1)
    for option in options:
        origin = get_origin(option)
        if origin is list and isinstance(value, str):
            return _list(value)
        if origin is list and value is None and None not in _options(annotation):
            return []  # an empty environment variable: no items
        if origin is Literal:
            choice = _choice(get_args(option), value)
            if choice is not None:
                return choice
        if isinstance(option, type) and issubclass(option, enum.Enum):
            choice = _choice(tuple(member.value for member in option), value)
            if choice is not None:
                return choice
    return value


def _options(annotation: Any) -> tuple[Any, ...]:
    """`X | None` and `Optional[X]` -> (X, None); `Annotated[X, ...]` -> X."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(
            get_args(option)[0] if get_origin(option) is Annotated else option
            for option in get_args(annotation)
        )
    return (annotation,)


def _list(text: str) -> Any:
    """`a, b` or `["a", "b"]`; empty text is an empty list."""
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return text  # pydantic says it is not a list
    return [item.strip() for item in text.split(",") if item.strip()]


def _choice(choices: tuple[Any, ...], value: Any) -> Any:
    """The choice that `value` names, ignoring case and whether it came as text."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    wanted = str(value).strip().lower()
    for choice in choices:
        if str(choice).lower() == wanted:
            return choice
    return None


# -- MQTT topics --------------------------------------------------------------------------


def _topic(topic: str, *, publish: bool) -> str:
    if not topic:
        raise ValueError("a topic cannot be empty")
    if "\x00" in topic:
        raise ValueError("a topic cannot contain the character U+0000")
    size = len(topic.encode("utf-8", "surrogatepass"))
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"a topic is at most {MAX_TOPIC_BYTES} bytes, this one has {size}")
    if publish and ("+" in topic or "#" in topic):
        raise ValueError(
            f"{_short(topic)} is a wildcard filter; an exact topic to publish to is needed "
            "('+' and '#' match many topics)"
        )
    if not publish and topic.startswith("$share/"):
        raise ValueError(
            "the source's topics are the meters' own: for a shared subscription, set "
            "fleet.share_group (p1evse subscribes to $share/<group>/<topic> itself)"
        )
    if not publish and not _exact_or_one_capture(topic):
        raise ValueError(
            "a topic to read from is exact, or has one '+' as a whole level for the site id "
            "of a fleet ('#' and more '+' would mix many meters' values)"
        )
    if publish and topic.startswith("$"):
        raise ValueError(f"{_short(topic)}: topics starting with '$' are the broker's own")
    return topic


SITE_CAPTURE = "+"
"""A whole level of a source topic that is `+` captures a fleet's site id there."""
SITE = "{site}"
"""Where a fleet's output topics put the site id back."""

# A site id is one topic level, and goes into topics, log lines, metric labels and the
# status page's paths: a letter or digit, then up to 63 of these.
SITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
SITE_ID_RULE = "a letter or digit, then up to 63 letters, digits or _ . : @ -"


def site_capture(topic: str) -> int | None:
    """The level of `topic` that captures a fleet's site id, if one does."""
    levels = topic.split("/")
    return levels.index(SITE_CAPTURE) if SITE_CAPTURE in levels else None


def with_site(section: SectionT, site: str) -> SectionT:
    """A copy of `section` for one site of a fleet: in every text value, a topic's `+`
    level and each `{site}` become `site`. Nothing is validated again: a site id is
    checked before it gets here."""
    return SiteTemplate(section).fill(site)


Plan = dict[str, "Plan | None"]
"""The fields of a section that hold a site's place: a section's own plan, or None for
a value (text, list of texts) to fill in."""


class SiteTemplate(Generic[SectionT]):
    """`with_site` planned once: the fields that hold a site's place are found once,
    and each site's copy is made along them only (a fleet makes thousands)."""

    def __init__(self, section: SectionT) -> None:
        self.section = section
        self._plan = _plan(section)

    def fill(self, site: str) -> SectionT:
        return _apply(self.section, self._plan, site)


def _plan(section: BaseModel) -> Plan:
    plan: Plan = {}
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            inner = _plan(value)
            if inner:
                plan[name] = inner
        elif _fill(value, "site") is not value:
            plan[name] = None
    return plan


def _apply(section: SectionT, plan: Plan, site: str) -> SectionT:
    if not plan:
        return section
    update = {
        name: _fill(getattr(section, name), site)
        if inner is None
        else _apply(getattr(section, name), inner, site)
        for name, inner in plan.items()
    }
    # model_construct, not model_copy: the copy shares the set of the fields that were
    # set (it never changes: sections are frozen) rather than copying it, which at ten
    # thousand sites is megabytes
    return type(section).model_construct(section.model_fields_set, **{**section.__dict__, **update})


def fill_site(text: str, site: str) -> str:
    """`text` for one site: a topic's `+` level and each `{site}` become `site` (the
    same object back if it holds neither)."""
    levels = text.split("/")
    if SITE_CAPTURE not in levels and SITE not in text:
        return text
    return "/".join(site if level == SITE_CAPTURE else level for level in levels).replace(
        SITE, site
    )


def _fill(value: Any, site: str) -> Any:
    if isinstance(value, str):
        return fill_site(value, site)
    if isinstance(value, list):
        items = [_fill(item, site) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def _exact_or_one_capture(topic: str) -> bool:
    levels = topic.split("/")
    wild = [level for level in levels if "+" in level or "#" in level]
    return not wild or wild == [SITE_CAPTURE]


def _short(topic: str) -> str:
    return repr(topic) if len(topic) <= 60 else repr(topic[:57] + "...")


def _publish_topic(topic: str) -> str:
    return _topic(topic, publish=True)


def _topic_prefix(topic: str) -> str:
    if topic and not topic.strip("/"):
        raise ValueError("a topic prefix needs a level, e.g. openevse")
    return _topic(topic.rstrip("/") or topic, publish=True)


def _read_topic(topic: str) -> str:
    return _topic(topic, publish=False)


PublishTopic = Annotated[str, AfterValidator(_publish_topic)]
"""A topic p1evse publishes to: no wildcards, not a `$` topic, within MQTT's limits;
exactly as written (a charger that subscribes to `a/b/` hears nothing on `a/b`)."""

TopicPrefix = Annotated[str, AfterValidator(_topic_prefix)]
"""The first levels of topics p1evse builds (`<prefix>/claim/set`): as `PublishTopic`,
with a trailing `/` dropped."""

ReadTopic = Annotated[str, AfterValidator(_read_topic)]
"""A topic a source reads: one exact topic (a wildcard would mix values of many topics),
or one with a `+` level that captures a fleet's site id; within MQTT's limits."""


def _host(host: str) -> str:
    if host != host.strip() or any(ch.isspace() or not ch.isprintable() for ch in host):
        raise ValueError("a host name or address has no spaces or control characters")
    if any(ch in host for ch in "/?#@"):
        raise ValueError("write the host alone, without scheme, login or path (e.g. 192.168.1.50)")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    if bracketed or any(ch in bare for ch in ":[]"):
        try:
            return str(ipaddress.IPv6Address(bare))
        except ValueError:
            raise ValueError(
                "a host name or an address, without a port (the port is a key of its "
                "own: port); brackets only around an IPv6 address"
            ) from None
    return host


def host_and_port(host: str, port: int) -> str:
    """`host:port` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Host = Annotated[str, Field(min_length=1), AfterValidator(_host)]
"""A host name or IP address, alone: no scheme, path or port (each a mistake a user
makes, and each only failed when connecting); an IPv6 address may be in brackets."""


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (a name other than localhost is
    not resolved, so it counts as reachable from elsewhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_tls_files(
    ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> None:
    """Load the files as the TLS connection will, so that one that is no PEM certificate
    (or key) is a config error now, naming the key, not a traceback when connecting."""
    for name, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path is not None and not path.is_file():
            raise ValueError(f"{name}: no such file: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"ca_file: {ca_file}: no PEM certificate in it ({exc})") from None
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(
                f"cert_file {cert_file} and key_file {key_file}: not a PEM certificate and "
                f"its private key ({exc})"
            ) from None
