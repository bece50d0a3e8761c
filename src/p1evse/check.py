"""`p1evse check`: validate, connect once, watch the source briefly, and say what
p1evse would do and which usual mistakes the setup shows.

What the source delivers goes through the same pipeline as in `run` (the same rules,
rejections and averaging), so "ready" means `run` would publish sensible values. It is a
guest on the broker: its own client id (a running service is never kicked off), no
availability message and no will, nothing published, nothing retained.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TextIO

from p1evse.app import describe
from p1evse.config import CONFIG_PATH_VARIABLE, ENV_PREFIX, Settings
from p1evse.counts import Count
from p1evse.errors import ChargerError
from p1evse.model import Event, GridPower, Reading, Rejected, Rejection, StaleAction
from p1evse.mqtt import Broker, BrokerUnavailable
from p1evse.pipeline import Pipeline
from p1evse.settings import (
    SITE_CAPTURE,
    SITE_ID,
    SITE_ID_RULE,
    fill_site,
    is_loopback,
    site_capture,
    with_site,
)
from p1evse.sinks.charger import ChargerState, DivertMode
from p1evse.sinks.openevse_http import get_json
from p1evse.site import Ports, Role, build_site
from p1evse.sources.p1 import P1Settings
from p1evse.sources.units import looks_like_kilowatts

Say = Callable[[str], None]

EXIT_READY = 0
EXIT_BROKER = 1
EXIT_NOT_READY = 3
MAX_SITES_LISTED = 100_000  # a fleet's site ids kept while listening
# What bytes that hold no telegram are refused as (anything else was a telegram).
UNFRAMED = {Rejection.TRUNCATED, Rejection.OVERSIZED, Rejection.NO_TELEGRAM}
# A meter clock this far from this machine's is worth a word (its readings still count).
CLOCK_OFF_S = 60.0
# what the source logs while watched is shown (a port that will not open): these lines
SOURCES_LOGGER = "p1evse.sources"
MAX_SOURCE_LINES = 5


@dataclass
class _Outcome:
    """What the pipeline made of the source's data: the readings it accepted (with the
    wall-clock time each came), every total the source sent (refused ones too, for the
    unit and period checks) and the values `run` would have published."""

    readings: list[tuple[Reading, float]] = field(default_factory=list)
    sent: list[tuple[float, float]] = field(default_factory=list)  # (arrival, W)
    values: list[GridPower] = field(default_factory=list)
    why: dict[Rejection, str] = field(default_factory=dict)  # the first detail per reason

    def observe(self, event: Event) -> None:
        if isinstance(event, Reading):
            self.readings.append((event, time.time()))
            self.sent += [(event.at, event.import_w), (event.at, event.export_w)]
        elif isinstance(event, Rejected):
            self.why.setdefault(event.reason, event.detail)
            if event.value is not None:
                self.sent.append((event.at, event.value))
        elif isinstance(event, GridPower):
            self.values.append(event)


async def check(
    settings: Settings,
    path: Path | None,
    listen_s: float,
    out: TextIO,
    environ: Mapping[str, str] = os.environ,
) -> int:
    def say(line: str = "") -> None:
        print(line, file=out)

    say(f"config: {path or 'built-in defaults'}{_overrides(environ)}: valid")
    say(f"  {describe(settings)}")
    topics = settings.source.subscriptions()
    say("subscribes to:" if topics else "subscribes to: nothing (the source is not MQTT)")
    group = settings.fleet.share_group if settings.is_fleet() else None
    for topic in topics:
        say(f"  {topic}" if group is None else f"  $share/{group}/{topic}")
    if group is not None:
        feed = fill_site(settings.openevse.grid_ie_topic, SITE_CAPTURE)
        say(f"  {feed}  every charger's feed, heard back: who else feeds it")
        say("  (this check reads the meters' topics unshared: it takes none from the fleet)")
    _say_outputs(settings, say)
    warnings = _config_warnings(settings)

    mqtt = settings.mqtt
    broker = Broker(mqtt, client_id=f"{mqtt.client_id}-check-{os.getpid()}", announce=False)
    try:
        await broker.connect_once()
    except BrokerUnavailable as exc:
        say(f"broker {broker.address}: FAILED: {exc}")
        _print_warnings(say, warnings)
        return EXIT_BROKER
    say(f"broker {broker.address}: connected (as {broker.client_id})")
    not_ready: list[str] = []
    try:
        if listen_s > 0:
            watch = _watch_fleet if settings.is_fleet() else _watch
            not_ready, watch_warnings = await watch(settings, broker, listen_s, say)
            warnings += watch_warnings
        else:
            say("source: not watched (--listen 0)")
    finally:
        await broker.close()
    if settings.openevse.url is not None:
        charger_warnings, unreachable = await _charger_config(settings, say)
        warnings += charger_warnings
        if unreachable is not None and settings.openevse.transport == "http":
            not_ready.append(f"the values go to the charger over HTTP, and {unreachable}")
        elif unreachable is not None:
            warnings.append(unreachable)  # only its settings were to be read
    _print_warnings(say, warnings)
    if not_ready:
        for reason in not_ready:
            say(f"not ready: {reason}")
        return EXIT_NOT_READY
    say("ready: run would publish these values")
    return EXIT_READY


def _overrides(environ: Mapping[str, str]) -> str:
    names = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_PATH_VARIABLE
    )
    return f" with {', '.join(names)} from the environment" if names else ""


def _say_outputs(settings: Settings, say: Say) -> None:
    openevse = settings.openevse
    say("publishes to:")
    if openevse.transport == "http":
        say(f"  {openevse.url}/status  grid_ie over HTTP (POST)")
    outputs = settings.output_topics()
    meaning = {
        "openevse.grid_ie_topic": "whole watts, + import / - export, QoS 0, not retained\n"
        "    -> set OpenEVSE's 'grid import/export' MQTT topic to exactly this",
        "openevse.live_pwr_topic": "the same value, for OpenEVSE's current shaper",
        "openevse.vrms_topic": "the meter's voltage, for OpenEVSE's divert maths",
        "mqtt.state_topic": "retained JSON of p1evse's state (meter, value sent, charger)",
        "openevse.deadman_topic": "retained marker of the dead-man's switch, whose will "
        f"pauses the charger if p1evse dies (connection {settings.mqtt.client_id}-deadman)",
    }
    for key in sorted(outputs, key=list(meaning).index):  # the charger's feed first
        say(f"  {outputs[key]}  {meaning[key]}")
    if settings.publish.on_stale is StaleAction.PAUSE:
        if openevse.transport == "http":
            say(f"  {openevse.url}/claims/{openevse.claim_client_id}  pause claim when stale")
        else:
            say(f'  {openevse.claim_topic}  {{"state":"disabled"}} when stale, release after')
    say(f"  {settings.announced_on()}  online / offline, retained")
    if settings.homeassistant.discovery:
        prefix = settings.homeassistant.prefix
        say(f"  {prefix}/…/config  Home Assistant discovery, retained")
    web = settings.web
    if web.address is None:
        say("status page: off (web.listen is empty)")
    else:
        token = ", token required" if web.token is not None else ""
        page = f"http://{web.address.authority}/"
        say(f"status page: {page} (/api/state, /metrics, /healthz{token})")


def _print_warnings(say: Say, warnings: list[str]) -> None:
    for warning in warnings:
        say(f"warning: {warning}")
    if not warnings:
        say("no warnings")


# what a car charging at OpenEVSE's least current (6 A) draws on one phase at 230 V
LEAST_CAR_W = 6 * 230
# the source keys that bring the meter's voltage (None: the source never does); the
# telegram sources and HomeWizard bring it when the meter sends it
VOLTAGE_KEYS = {
    "mqtt_split": "phase_voltage_topics",
    "mqtt_json": "phase_voltage_fields",
    "mqtt_value": None,
}


def _config_warnings(settings: Settings) -> list[str]:
    warnings = []
    publish = settings.publish
    if publish.interval == 0:
        warnings.append(
            "publish.interval is 0: every reading is relayed, but OpenEVSE's divert filter "
            "wants one value every 5-10 s (a 1 Hz feed degrades its regulation)"
        )
    elif publish.interval > 10:
        warnings.append(
            f"publish.interval {publish.interval:g} s: OpenEVSE expects a value every 5-10 s"
        )
    steady_only = sorted({"step_w", "band_w"} & publish.model_fields_set)
    if publish.mode != "steady" and steady_only:
        warnings.append(
            f"publish.{' and publish.'.join(steady_only)} set, but publish.mode is "
            f"{publish.mode}: {'they take' if len(steady_only) > 1 else 'it takes'} effect "
            "with mode steady only"
        )
    if 0 < publish.interval < 1:
        warnings.append(
            f"publish.interval {publish.interval:g} s: OpenEVSE's divert filter counts whole "
            "seconds, so a value less than 1 s after the one before moves nothing"
        )
    if publish.on_stale is StaleAction.NONE:
        warnings.append(
            "publish.on_stale is none: when the meter goes quiet OpenEVSE keeps its last "
            "charge rate indefinitely"
        )
    if publish.on_stale is StaleAction.IMPORT and publish.failsafe_import_w < LEAST_CAR_W:
        warnings.append(
            f"publish.failsafe_import_w {publish.failsafe_import_w} W: less than a car draws "
            f"at 6 A ({LEAST_CAR_W} W), so when the meter goes quiet divert winds the car "
            "down slowly, or at 0 W not at all"
        )
    source = settings.source
    polled = getattr(source, "interval", None) if source.type == "homewizard" else None
    if polled is not None and publish.stale_after < 3 * polled:
        warnings.append(
            f"publish.stale_after {publish.stale_after:g} s is less than three of "
            f"source.interval ({polled:g} s): one slow answer pauses the charger"
        )
    if settings.openevse.voltage and source.type in VOLTAGE_KEYS:
        key = VOLTAGE_KEYS[source.type]
        if key is None or not getattr(source, key):
            how = "" if key is None else f" (set source.{key})"
            warnings.append(
                f"openevse.voltage is on, but the {source.type} source brings no voltage"
                f"{how}: nothing is sent to the charger's vrms"
            )
    mqtt = settings.mqtt
    if mqtt.password is not None and mqtt.tls is None and not is_loopback(mqtt.host):
        warnings.append(
            f"the MQTT password crosses the network to {mqtt.host} unencrypted: set mqtt.tls"
        )
    if mqtt.tls is not None and mqtt.tls.insecure:
        warnings.append("mqtt.tls.insecure: the broker's certificate name is not checked")
    web = settings.web
    address = web.address
    if address is not None and web.token is None and not is_loopback(address.host):
        warnings.append(
            f"web.listen {web.listen}: the status page is reachable from the network "
            "without a token: set web.token (or web.token_file)"
        )
    return warnings


async def _watch_fleet(
    settings: Settings, broker: Broker, listen_s: float, say: Say
) -> tuple[list[str], list[str]]:
    """A fleet: the site ids its topics bring, and the first site to speak watched as
    `_watch` watches one meter."""
    seen: dict[str, None] = {}
    refused: set[str] = set()
    spoke = asyncio.Event()

    def heard(level: int, topic: str, payload: bytes | bytearray) -> None:
        site = topic.split("/")[level]
        if SITE_ID.fullmatch(site) is None:
            refused.add(site[:40])
        elif len(seen) < MAX_SITES_LISTED:
            seen.setdefault(site)
            spoke.set()

    for pattern in settings.source.subscriptions():
        level = site_capture(pattern)
        assert level is not None  # site_id_problems: every source topic of a fleet has one
        broker.subscribe_pattern(pattern, partial(heard, level), retained=False)
    started = asyncio.get_running_loop().time()
    try:
        await asyncio.wait_for(spoke.wait(), listen_s)
    except TimeoutError:
        problem = (
            f"no site sent anything on the source's topics within {listen_s:g} s: are the "
            "meters (readers) sending, and are the topics right?"
        )
        return [problem], []
    first = next(iter(seen))
    say(f"fleet: watching site {first}, the first to send")
    result = await _watch(with_site(settings, first), broker, listen_s, say)
    shown = ", ".join(list(seen)[:10]) + (", …" if len(seen) > 10 else "")
    more = "+" if len(seen) >= MAX_SITES_LISTED else ""
    listened = asyncio.get_running_loop().time() - started
    say(f"fleet: {len(seen)}{more} site ids heard in {listened:.0f} s: {shown}")
    if refused:
        say(f"  refused (no site id: {SITE_ID_RULE}): {', '.join(sorted(refused)[:5])}")
    return result


async def _watch(
    settings: Settings, broker: Broker, listen_s: float, say: Say
) -> tuple[list[str], list[str]]:
    """Run the real source into the real pipeline, and the sinks for their read-back
    only (nothing is ever handed to them), for `listen_s`. Returns why the source is
    not ready (empty: it is) and warnings."""
    loop = asyncio.get_running_loop()
    outcome = _Outcome()
    site = build_site(
        settings,
        Ports(loop, broker),
        Role(feed=False, discovery=False, state_topic=False),  # it publishes nothing
        name="check",
        observers=[outcome.observe],
    )
    with _source_said() as said:
        tasks = [loop.create_task(work(), name=name) for name, work in site.work().items()]
        site.start()
        await asyncio.sleep(listen_s)  # watching for a fixed time is the point here
        site.bridge.stop()  # the sinks were never fed: they hold nothing to undo
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    source_counts = site.source.counts() if site.source is not None else []
    for line in said.lines:
        say(f"source said: {line}")
    not_ready, warnings = _source_report(
        settings, site.pipeline, outcome, listen_s, say, source_counts, list(said.lines)
    )
    return not_ready, warnings + _charger_report(settings, site.charger, listen_s, say)


def _source_report(
    settings: Settings,
    pipeline: Pipeline,
    outcome: _Outcome,
    listen_s: float,
    say: Say,
    source_counts: list[Count],
    source_said: list[str],
) -> tuple[list[str], list[str]]:
    counters = pipeline.counters
    rejected = sum(counters.rejected.values())
    say(f"source: {counters.readings} readings in {listen_s:g} s, {rejected} rejected")
    for reason, count in counters.rejected.items():
        why = outcome.why.get(reason)
        say(f"  rejected {count}x: {reason.value}" + (f": {why}" if why else ""))
    unit_warnings = _unit_warnings(settings, [watts for _, watts in outcome.sent])
    if not outcome.readings:
        unframed = _no_telegram(settings, source_counts, set(counters.rejected), listen_s)
        if unframed is not None:
            problem = unframed
        elif outcome.sent or rejected:
            problem = "every value the source sent was rejected (see above)"
        elif source_said:  # the port or the address would not open, say
            problem = f"no data from the source within {listen_s:g} s: {source_said[0]}"
        else:
            problem = (
                f"no data from the source within {listen_s:g} s: is the meter (reader) "
                "sending, and are the topics or the address right?"
            )
        return [problem, *unit_warnings], []
    reading, arrived = outcome.readings[-1]
    say(f"  latest: import {reading.import_w:g} W, export {reading.export_w:g} W")
    for name, values, unit in (
        ("import per phase", reading.phase_import_w, "W"),
        ("export per phase", reading.phase_export_w, "W"),
        ("voltage per phase", reading.phase_voltage_v, "V"),
    ):
        if values is not None:
            shown = " / ".join("-" if v is None else f"{v:g} {unit}" for v in values)
            say(f"  {name}: {shown}")
    warnings = _clock_report(reading, arrived, say)
    if outcome.values:
        shown = ", ".join(f"{value.watts}" for value in outcome.values[-5:])
        say(f"  run would publish: {shown} W (the last {min(5, len(outcome.values))})")
    period = _period([at for at, _ in outcome.sent], settings.publish.pair_window)
    if period is not None:
        say(f"  about one reading every {period:.1f} s")
        if settings.publish.stale_after < 3 * period:
            warnings.append(
                f"publish.stale_after {settings.publish.stale_after:g} s is shorter than 3 "
                f"source periods ({3 * period:.0f} s): one late reading would pause charging"
            )
    return unit_warnings, warnings


class _SourceLog(logging.Handler):
    """The distinct lines the source logged at warning or above, the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: dict[str, None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < MAX_SOURCE_LINES:
            self.lines.setdefault(record.getMessage()[:300])


@contextmanager
def _source_said() -> Iterator[_SourceLog]:
    """Hear what the source logs while check watches it: check runs with logging at
    error, and a port or address that will not open is only a warning of the source's
    (it retries, as it would in `run`)."""
    logger = logging.getLogger(SOURCES_LOGGER)
    handler = _SourceLog()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _no_telegram(
    settings: Settings, source_counts: list[Count], rejected: set[Rejection], listen_s: float
) -> str | None:
    """Why bytes from a telegram source gave not one telegram, if that is what happened
    (no telegram decoded, and none refused for what it said): serial settings that do
    not fit the meter."""
    counted = {count.name: count.value for count in source_counts}
    skipped = counted.get("source_skipped_bytes", 0)
    if not skipped or counted.get("source_telegrams", 0) or rejected - UNFRAMED:
        return None
    problem = f"{skipped:g} bytes arrived in {listen_s:g} s but not one telegram"
    if isinstance(settings.source, P1Settings):
        return f"{problem}: {settings.source.no_telegram_hint()}"
    return problem


def _clock_report(reading: Reading, arrived: float, say: Say) -> list[str]:
    if reading.meter_time is None:
        return []
    offset = reading.meter_time.timestamp() - arrived
    say(f"  meter clock: {reading.meter_time.isoformat()} ({offset:+.0f} s from this machine)")
    if abs(offset) < CLOCK_OFF_S:
        return []
    direction = "ahead of" if offset > 0 else "behind"
    return [
        f"the meter's clock is {abs(offset):.0f} s {direction} this machine's: its "
        "readings still count (only the same telegram again is a repeat)"
    ]


def _period(arrivals: list[float], pair_window: float) -> float | None:
    starts: list[float] = []
    for at in arrivals:
        if not starts or at - starts[-1] >= pair_window:
            starts.append(at)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return statistics.median(gaps) if gaps else None


def _unit_warnings(settings: Settings, values: list[float]) -> list[str]:
    unit = getattr(settings.source, "unit", None)
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return []
    biggest = max(finite)
    if unit == "kW" and biggest > settings.publish.max_power_w:
        return [
            f"a value of {biggest / 1000:g} kW arrived, above publish.max_power_w: the "
            "source probably publishes W; set source.unit: W"
        ]
    nonzero = [value for value in finite if value]
    if unit == "W" and looks_like_kilowatts(nonzero):
        return [
            f"only small fractional values arrived (largest {max(nonzero):g} W): the source "
            "probably publishes kW; set source.unit: kW"
        ]
    return []


def _charger_report(
    settings: Settings, charger: ChargerState, listen_s: float, say: Say
) -> list[str]:
    openevse = settings.openevse
    where = f"{openevse.url}/status" if openevse.transport == "http" else f"{openevse.base_topic}/…"
    if charger.updated_at is None:
        say(f"charger: no report on {where} within {listen_s:g} s")
        if openevse.transport == "http":
            return [f"OpenEVSE did not answer on {where}"]
        return [
            f"nothing from OpenEVSE on {where} within {listen_s:g} s: is its MQTT on, and is "
            f"openevse.base_topic its base topic? (the pause claim goes to {openevse.claim_topic})"
        ]
    mode = charger.divertmode.name.lower() if charger.divertmode is not None else "unknown"
    amps = f"{charger.amps:g} A" if charger.amps is not None else "unknown"
    say(f"charger: divert mode {mode}, state {charger.state}, car draws {amps}")
    if charger.divertmode is DivertMode.NORMAL:
        return [
            "OpenEVSE is in normal mode: it charges at full rate whatever the sun does; "
            "switch it to Eco for solar divert (p1evse does not pause a normal-mode charge)"
        ]
    return []


# OpenEVSE's divert_type setting: which feed divert steers by
DIVERT_TYPES = {0: "solar (PV production)", 1: "grid (import/export)"}


async def _charger_config(settings: Settings, say: Say) -> tuple[list[str], str | None]:
    """What the charger's own settings say about the feed p1evse provides, and why the
    charger could not be asked (None: it answered)."""
    openevse = settings.openevse
    try:
        config = await get_json(openevse, "/config")
    except ChargerError as exc:
        say(f"charger {openevse.url}: FAILED: {exc}")
        return [], str(exc)
    if not isinstance(config, dict):
        return [], f"{openevse.url}/config did not answer with settings"
    warnings = []
    divert_type = config.get("divert_type")
    described = DIVERT_TYPES.get(divert_type) if isinstance(divert_type, int) else None
    say(f"charger {openevse.url}: divert type {described or repr(divert_type)}")
    if divert_type == 0:
        warnings.append(
            "OpenEVSE's divert type is solar: it would take p1evse's grid power for PV "
            "production; set its divert type to grid"
        )
    grid_ie = config.get("mqtt_grid_ie")
    if openevse.transport == "mqtt" and grid_ie is not None:
        say(f"  its grid import/export topic: {grid_ie}")
        if grid_ie != openevse.grid_ie_topic:
            warnings.append(
                f"OpenEVSE reads grid import/export from {grid_ie!r}, but p1evse publishes to "
                f"{openevse.grid_ie_topic!r}: set one to the other"
            )
    return warnings, None
