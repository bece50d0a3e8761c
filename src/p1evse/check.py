"""`p1evse check`: validate, connect once, watch the source briefly, and say what
p1evse would do and which usual mistakes the setup shows."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from p1evse.app import describe
from p1evse.config import Settings, is_loopback
from p1evse.model import PhaseKind, Reading, Rejection, Side, StaleAction
from p1evse.mqtt import Broker, BrokerUnavailable
from p1evse.sinks import build_sinks
from p1evse.sinks.charger import ChargerState, DivertMode
from p1evse.sinks.openevse_http import ChargerError, get_json
from p1evse.sources import build_source

Say = Callable[[str], None]

# A kW-configured value this large is almost certainly W (no household draws 100 kW).
KW_LOOKS_LIKE_W = 100_000.0
# DSMR-reader publishes kW with three decimals; a W-configured source seeing only
# values below this (and fractional) is probably publishing kW.
W_LOOKS_LIKE_KW = 50.0


@dataclass
class _Recorder:
    """An `Intake` that only remembers what the source delivered."""

    loop: asyncio.AbstractEventLoop
    halves: list[tuple[float, Side, float]] = field(default_factory=list)
    rejections: dict[Rejection, int] = field(default_factory=dict)
    last_reading: Reading | None = None

    def half(self, side: Side, watts: float) -> None:
        self.halves.append((self.loop.time(), side, watts))

    def reading(self, reading: Reading) -> None:
        """A whole reading counts as both halves, at one time."""
        self.halves.append((reading.at, Side.IMPORT, reading.import_w))
        self.halves.append((reading.at, Side.EXPORT, reading.export_w))
        self.last_reading = reading

    def phase(self, kind: PhaseKind, index: int, value: float) -> None:
        pass  # per-phase values don't change what check says

    def reject(self, reason: Rejection, detail: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1


async def check(settings: Settings, path: Path | None, listen_s: float, out: TextIO) -> int:
    def say(line: str = "") -> None:
        print(line, file=out)

    say(f"config: {path or 'built-in defaults'} (with P1EVSE_* environment overrides): valid")
    say(f"  {describe(settings)}")
    topics = settings.source.subscriptions()
    say("subscribes to:" if topics else "subscribes to: nothing (the source is not MQTT)")
    for topic in topics:
        say(f"  {topic}")
    openevse = settings.openevse
    say("publishes to:")
    say(f"  {openevse.grid_ie_topic}  whole watts, + import / - export, QoS 0, not retained")
    say("    -> set OpenEVSE's 'grid import/export' MQTT topic to exactly this")
    if settings.publish.on_stale is StaleAction.PAUSE:
        say(f'  {openevse.claim_topic}  {{"state":"disabled"}} when stale, release after')
    say(f"  {settings.mqtt.availability_topic}  online / offline, retained")
    web = settings.web
    if web.listen is None:
        say("status page: off (web.listen is empty)")
    else:
        token = ", token required" if web.token is not None else ""
        say(f"status page: http://{web.listen}/ (/api/state, /metrics, /healthz{token})")
    warnings = _config_warnings(settings)

    broker = Broker(settings.mqtt)
    try:
        await broker.connect_once()
    except BrokerUnavailable as exc:
        say(f"broker {broker.address}: FAILED: {exc}")
        _print_warnings(say, warnings)
        return 1
    say(f"broker {broker.address}: connected")
    try:
        if listen_s > 0:
            warnings += await _watch(settings, broker, listen_s, say)
    finally:
        await broker.close()
    if settings.openevse.url is not None:
        warnings += await _charger_config(settings, say)
    _print_warnings(say, warnings)
    return 0


def _print_warnings(say: Say, warnings: list[str]) -> None:
    for warning in warnings:
        say(f"warning: {warning}")
    if not warnings:
        say("no warnings")


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
    if publish.on_stale is StaleAction.NONE:
        warnings.append(
            "publish.on_stale is none: when the meter goes quiet OpenEVSE keeps its last "
            "charge rate indefinitely"
        )
    mqtt = settings.mqtt
    if mqtt.password is not None and mqtt.tls is None and not is_loopback(mqtt.host):
        warnings.append(
            f"the MQTT password crosses the network to {mqtt.host} unencrypted: set mqtt.tls"
        )
    if mqtt.tls is not None and mqtt.tls.insecure:
        warnings.append("mqtt.tls.insecure: the broker's certificate name is not checked")
    web = settings.web
    if web.listen is not None and web.token is None and not is_loopback(web.host):
        warnings.append(
            f"web.listen {web.listen}: the status page is reachable from the network "
            "without a token: set web.token (or web.token_file)"
        )
    return warnings


async def _watch(settings: Settings, broker: Broker, listen_s: float, say: Say) -> list[str]:
    """Run the real source, and the sinks for their read-back only, for `listen_s`."""
    loop = asyncio.get_running_loop()
    recorder = _Recorder(loop)
    charger = ChargerState()
    sinks = build_sinks(
        settings, broker, charger, loop.time, lambda: None
    )  # nothing stale: no claims
    tasks = [
        loop.create_task(build_source(settings.source, broker).run(recorder)),
        *(loop.create_task(sink.run()) for sink in sinks),
    ]
    await asyncio.sleep(listen_s)  # watching for a fixed time is the point here
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return _source_report(settings, recorder, listen_s, say) + _charger_report(
        settings, charger, listen_s, say
    )


def _source_report(settings: Settings, recorder: _Recorder, listen_s: float, say: Say) -> list[str]:
    halves, warnings = recorder.halves, []
    rejected = sum(recorder.rejections.values())
    say(f"source: {len(halves)} values in {listen_s:g} s, {rejected} rejected")
    for reason, count in recorder.rejections.items():
        say(f"  rejected {count}x: {reason.value}")
    if not halves:
        warnings.append(
            f"no data from the source within {listen_s:g} s: is the meter (reader) "
            "sending, and are the topics or the address right?"
        )
        return warnings
    latest = {side: watts for _, side, watts in halves}
    for side in Side:
        if side in latest:
            say(f"  latest {side.value}: {latest[side]:g} W")
    reading = recorder.last_reading
    if reading is not None:
        for name, values, unit in (
            ("import per phase", reading.phase_import_w, "W"),
            ("export per phase", reading.phase_export_w, "W"),
            ("voltage per phase", reading.phase_voltage_v, "V"),
        ):
            if values is not None:
                shown = " / ".join("-" if v is None else f"{v:g} {unit}" for v in values)
                say(f"  {name}: {shown}")
        if reading.meter_time is not None:
            say(f"  meter clock: {reading.meter_time.isoformat()}")
    period = _telegram_period(halves, settings.publish.pair_window)
    if period is not None:
        say(f"  about one reading every {period:.1f} s")
        if settings.publish.stale_after < 3 * period:
            warnings.append(
                f"publish.stale_after {settings.publish.stale_after:g} s is shorter than 3 "
                f"source periods ({3 * period:.0f} s): one late reading would pause charging"
            )
    warnings += _unit_warnings(settings, [watts for _, _, watts in halves])
    return warnings


def _telegram_period(halves: list[tuple[float, Side, float]], pair_window: float) -> float | None:
    starts: list[float] = []
    for at, _, _ in halves:
        if not starts or at - starts[-1] >= pair_window:
            starts.append(at)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return statistics.median(gaps) if gaps else None


def _unit_warnings(settings: Settings, values: list[float]) -> list[str]:
    unit = getattr(settings.source, "unit", None)
    biggest = max(values)
    if unit == "kW" and biggest > KW_LOOKS_LIKE_W:
        return [
            f"a value of {biggest / 1000:g} kW arrived: the source probably publishes W; "
            "set source.unit: W"
        ]
    nonzero = [value for value in values if value]
    if (
        unit == "W"
        and nonzero
        and max(nonzero) < W_LOOKS_LIKE_KW
        and any(value != int(value) for value in nonzero)
    ):
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
    amps = f"{charger.amp / 1000:g} A" if charger.amp is not None else "unknown"
    say(f"charger: divert mode {mode}, state {charger.state}, car draws {amps}")
    if charger.divertmode is DivertMode.NORMAL:
        return [
            "OpenEVSE is in normal mode: it charges at full rate whatever the sun does; "
            "switch it to Eco for solar divert (p1evse does not pause a normal-mode charge)"
        ]
    return []


# OpenEVSE's divert_type setting: which feed divert steers by
DIVERT_TYPES = {0: "solar (PV production)", 1: "grid (import/export)"}


async def _charger_config(settings: Settings, say: Say) -> list[str]:
    """What the charger's own settings say about the feed p1evse provides."""
    openevse = settings.openevse
    try:
        config = await get_json(openevse, "/config")
    except ChargerError as exc:
        say(f"charger {openevse.url}: FAILED: {exc}")
        return [str(exc)]
    if not isinstance(config, dict):
        return [f"{openevse.url}/config did not answer with settings"]
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
    return warnings
