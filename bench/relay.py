"""Relay benchmark: `p1evse run` against the naive paho relay it replaces.

What it measures, for each subject and each input rate (default 10, 100 and 1000
readings/s, 10 s each):

- messages sent to the subject and outputs received back (the difference is lost),
- latency from publishing a reading on `dsmr/reading/electricity_currently_delivered`
  to receiving the matching watts on `p1evse/grid_ie` (p50, p99; max in the details),
- CPU time of the subject process per reading (the kernel's per-process CPU clock,
  read before and after each rate; idle wake-ups count too),
- peak RSS of the subject process (VmHWM, read after each rate, so it only grows).

How: the script starts its own mosquitto on a free loopback port, then runs each subject
in turn against it as a subprocess: `p1evse run` in relay mode (`publish.interval: 0`,
every reading is published at once), the baseline `bench/baseline_paho.py` (bare paho on
`loop_forever()`, the original script's behaviour) and, only when the `aiomqtt` package
is importable, a bare aiomqtt relay. The load generator and the receiver are paho clients
in this process, so send and receive times come from one clock (`perf_counter_ns`); their
sockets have TCP_NODELAY, the subjects' sockets are left as their MQTT library sets them.
Each reading carries a value distinct from the other readings in flight, and each output
is matched to its input by value. Every subject is warmed up first: it must answer a
probe reading (p1evse must also have said `online` on `p1evse/status`), then gets a short
unmeasured load at 100/s.

The numbers are for comparing the subjects side by side in one run, not absolutes: on a
2-core machine the load generator, the broker and the subject share the two cores, so at
1000/s they compete with each other and latency includes some of that contention.

    uv run python bench/relay.py             # full run, about 40 s per subject
    uv run python bench/relay.py --quick     # smoke run, a few seconds per subject
    uv run python bench/relay.py --rates 100,1000 --duration 30 --subjects p1evse,baseline

It prints a markdown table and comparison lines on stdout (progress goes to stderr).
Targets are shown next to the numbers for information; the script judges nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

HOST = "127.0.0.1"
DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"
GRID_IE = "p1evse/grid_ie"
STATUS = "p1evse/status"

BENCH_DIR = Path(__file__).resolve().parent
VALUE_CYCLE = 5000  # readings 0.001 .. 5.000 kW: distinct within any 5000 in flight
BROKER_START_TIMEOUT_S = 10.0
SUBJECT_START_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 5.0
PROBE_PERIOD_S = 0.2
DRAIN_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
SENDER_SERVICE_PERIOD_NS = 500_000_000
WARMUP_RATE = 100

TARGET_P50_DELTA_MS = 0.5
TARGET_CPU_RATIO = 1.3
TARGET_CPU_RATIO_RATE = 1000
TARGET_RSS_MB = 40.0

AIOMQTT_RELAY = f"""
import asyncio
import sys

import aiomqtt


async def relay(host: str, port: int) -> None:
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe([({DELIVERED!r}, 0), ({RETURNED!r}, 0)])
        async for message in client.messages:
            watts = round(float(message.payload) * 1000)
            if message.topic.value == {RETURNED!r}:
                watts = -watts
            await client.publish({GRID_IE!r}, str(watts))


asyncio.run(relay(sys.argv[1], int(sys.argv[2])))
"""


class BenchError(Exception):
    """Something the benchmark needs did not start or stopped."""


# -- measurement bookkeeping -----------------------------------------------------------


class Phase:
    """The readings of one measured (or warm-up) stretch, and what came back of them."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.latencies_ns: list[int] = []
        self.first_output = threading.Event()
        self.drained = threading.Event()
        self._closed = False
        self._lock = threading.Lock()

    def on_sent(self) -> None:
        with self._lock:
            self.sent += 1

    def on_received(self, latency_ns: int) -> None:
        with self._lock:
            self.received += 1
            self.latencies_ns.append(latency_ns)
            if self._closed and self.received >= self.sent:
                self.drained.set()
        self.first_output.set()

    def close(self, timeout: float) -> bool:
        """No more readings: wait until every output is in; False on timeout."""
        with self._lock:
            self._closed = True
            if self.received >= self.sent:
                self.drained.set()
        return self.drained.wait(timeout)

    def snapshot(self) -> tuple[int, int, list[int]]:
        with self._lock:
            return self.sent, self.received, sorted(self.latencies_ns)


class Tracker:
    """Readings in flight, by value: value -> (send time, phase)."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[int, Phase]] = {}
        self._lock = threading.Lock()

    def expect(self, value: int, phase: Phase) -> None:
        # a value still pending from VALUE_CYCLE readings ago was lost: replacing it
        # leaves its phase one output short, which is what counts it
        with self._lock:
            self._pending[value] = (time.perf_counter_ns(), phase)

    def match(self, value: int, now_ns: int) -> bool:
        with self._lock:
            entry = self._pending.pop(value, None)
        if entry is None:
            return False
        sent_ns, phase = entry
        phase.on_received(now_ns - sent_ns)
        return True

    def forget(self, phase: Phase) -> None:
        """Stop waiting for a phase's missing outputs: if they come, they are unmatched."""
        with self._lock:
            for value in [v for v, (_, p) in self._pending.items() if p is phase]:
                del self._pending[value]


# -- MQTT clients in this process ------------------------------------------------------


def no_delay(client: paho.Client) -> None:
    """No Nagle delay on the bench's own sockets (paho leaves it on): a reading must not
    wait for the ACK of the one before. The subjects' sockets are left as they are."""
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Receiver:
    """Subscribed to the output and p1evse's availability, on paho's network thread."""

    def __init__(self, port: int, tracker: Tracker) -> None:
        self._port = port
        self._tracker = tracker
        self.online = threading.Event()
        self.unmatched = 0
        self._subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-receiver")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> Receiver:
        self._client.connect(HOST, self._port, keepalive=60)
        no_delay(self._client)
        self._client.loop_start()
        if not self._subscribed.wait(CLIENT_TIMEOUT_S):
            self.__exit__()
            raise BenchError("the receiver got no SUBACK from the broker")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe([(GRID_IE, 0), (STATUS, 0)])

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        now_ns = time.perf_counter_ns()
        if message.topic == STATUS:
            if message.payload == b"online":
                self.online.set()
            else:
                self.online.clear()
            return
        try:
            value = int(message.payload)
        except ValueError:
            self.unmatched += 1
            return
        if not self._tracker.match(value, now_ns):
            self.unmatched += 1


class Sender:
    """Publishes from the calling thread: no network thread, so a publish is written to
    the socket before `publish` returns. `service()` keeps the connection alive."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sender")

    def __enter__(self) -> Sender:
        client = self._client
        client.connect(HOST, self._port, keepalive=60)
        no_delay(client)
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while not client.is_connected():
            remaining = deadline - time.monotonic()
            sock = client.socket()
            if remaining <= 0 or sock is None:
                raise BenchError("the load generator got no CONNACK from the broker")
            readable, _, _ = select.select([sock], [], [], remaining)
            if readable:
                client.loop_read()
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=0, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BenchError(f"the load generator could not publish: {info.rc}")

    def service(self) -> None:
        client = self._client
        sock = client.socket()
        if sock is not None and select.select([sock], [], [], 0)[0]:
            client.loop_read()
        client.loop_misc()
        if client.want_write():
            client.loop_write()


class LoadGen:
    """Readings at a fixed rate, each with a value distinct from those in flight."""

    def __init__(self, sender: Sender, tracker: Tracker) -> None:
        self._sender = sender
        self._tracker = tracker
        self._seq = 0

    def send(self, phase: Phase) -> None:
        value = self._seq % VALUE_CYCLE + 1  # watts; never 0, so every reading is relayed
        self._seq += 1
        phase.on_sent()
        self._tracker.expect(value, phase)
        self._sender.publish(DELIVERED, f"{value / 1000:.3f}")

    def run(self, phase: Phase, rate: float, count: int) -> float:
        """Send `count` readings paced by the clock; returns the rate achieved."""
        interval_ns = 1e9 / rate
        start = time.perf_counter_ns()
        next_service = start + SENDER_SERVICE_PERIOD_NS
        for i in range(count):
            now = time.perf_counter_ns()
            if now >= next_service:
                self._sender.service()
                next_service = now + SENDER_SERVICE_PERIOD_NS
            delay_ns = start + round(i * interval_ns) - time.perf_counter_ns()
            if delay_ns > 0:
                time.sleep(delay_ns / 1e9)
            self.send(phase)
        elapsed_ns = time.perf_counter_ns() - start
        return (count - 1) * 1e9 / elapsed_ns if count > 1 and elapsed_ns > 0 else rate

    def clear_retained(self, topic: str) -> None:
        self._sender.publish(topic, "", retain=True)


@dataclass(slots=True)
class Bench:
    """What every subject is measured with."""

    port: int
    workdir: Path
    receiver: Receiver
    tracker: Tracker
    loadgen: LoadGen


# -- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Mosquitto:
    """A private mosquitto on a free loopback port, ready once it logs "running"."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.version = "?"
        self.log: deque[str] = deque(maxlen=20)
        self._config = workdir / "mosquitto.conf"
        self._ready = threading.Event()
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Mosquitto:
        self._config.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "log_dest stderr\n"
            "log_type information\n"
        )
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # mosquitto block-buffers its log into a pipe; stdbuf makes "running" show at once
        self._process = subprocess.Popen(
            ["stdbuf", "-oL", "-eL", mosquitto, "-c", str(self._config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches only this script, which stops it
        )
        threading.Thread(target=self._drain, daemon=True, name="mosquitto-log").start()
        if not self._ready.wait(BROKER_START_TIMEOUT_S) or self._process.poll() is not None:
            self.__exit__()
            raise BenchError(f"mosquitto did not start: {' | '.join(self.log)}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_process(self._process)

    def _drain(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.log.append(line.rstrip())
            if " running" in line and not self._ready.is_set():
                words = line.split()
                if "version" in words:
                    self.version = words[words.index("version") + 1]
                self._ready.set()
        self._ready.set()  # it exited: let the waiter see that


@dataclass(frozen=True, slots=True)
class SubjectSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    says_online: bool  # publishes a retained `online` on p1evse/status when connected


class SubjectProcess:
    """A subject under test; `stop()` (or leaving the `with`) ends it."""

    def __init__(self, spec: SubjectSpec, workdir: Path) -> None:
        self.spec = spec
        self._log_path = workdir / f"{spec.name}.log"
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SubjectProcess:
        self._log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            self.spec.argv,
            env=self.spec.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_process(self._process)
        if self._log is not None:
            self._log.close()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def check_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            tail = self._log_path.read_text(errors="replace").strip().splitlines()[-8:]
            raise BenchError(f"{self.spec.name} exited with {code}: " + " | ".join(tail))

    def cpu_ns(self) -> int:
        """User + system CPU time of all its threads, in ns."""
        try:
            # clock_getcpuclockid(pid): the scheduler's exact per-process CPU clock
            return time.clock_gettime_ns(((~self.pid) << 3) | 2)
        except OSError:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime
            return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return math.nan


def subject_specs(port: int) -> dict[str, SubjectSpec]:
    """Every subject this machine can run, in the order they are measured."""
    base_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("P1EVSE_")}
    p1evse_env = {
        **base_env,
        "P1EVSE_MQTT__HOST": HOST,
        "P1EVSE_MQTT__PORT": str(port),
        "P1EVSE_PUBLISH__INTERVAL": "0",
        "P1EVSE_PUBLISH__STALE_AFTER": "3600",
        "P1EVSE_WEB__LISTEN": "",
        # the core relay path: the optional observers (status page, state topic) off,
        # as bench/web.py measures what the page costs
        "P1EVSE_MQTT__STATE_TOPIC": "",
    }
    specs = {
        "baseline": SubjectSpec(
            "baseline",
            [sys.executable, str(BENCH_DIR / "baseline_paho.py"), HOST, str(port)],
            base_env,
            says_online=False,
        ),
        "p1evse": SubjectSpec(
            "p1evse", [sys.executable, "-m", "p1evse", "run"], p1evse_env, says_online=True
        ),
    }
    if importlib.util.find_spec("aiomqtt") is not None:
        specs["aiomqtt"] = SubjectSpec(
            "aiomqtt",
            [sys.executable, "-c", AIOMQTT_RELAY, HOST, str(port)],
            base_env,
            says_online=False,
        )
    return specs


# -- measuring -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    rates: list[int]
    duration_s: float
    warmup_s: float


@dataclass(frozen=True, slots=True)
class Row:
    subject: str
    rate: int
    sent: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us: float
    rss_mb: float
    unmatched: int
    achieved_rate: float

    @property
    def lost(self) -> int:
        return self.sent - self.received


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile_ms(ordered_ns: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in ms."""
    if not ordered_ns:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered_ns)))
    return ordered_ns[rank - 1] / 1e6


def wait_until(event: threading.Event, subject: SubjectProcess, timeout: float) -> bool:
    """Wait for `event`, giving up early if the subject dies."""
    deadline = time.monotonic() + timeout
    while not event.wait(min(PROBE_PERIOD_S, max(0.0, deadline - time.monotonic()))):
        subject.check_alive()
        if time.monotonic() >= deadline:
            return False
    return True


def wait_ready(subject: SubjectProcess, bench: Bench) -> None:
    """Until the subject relays: its `online` if it says one, then a first output."""
    name = subject.spec.name
    if subject.spec.says_online and not wait_until(
        bench.receiver.online, subject, SUBJECT_START_TIMEOUT_S
    ):
        raise BenchError(f"{name} did not say online on {STATUS}")
    probe = Phase()
    deadline = time.monotonic() + SUBJECT_START_TIMEOUT_S
    while not probe.first_output.is_set():
        subject.check_alive()
        if time.monotonic() >= deadline:
            raise BenchError(f"{name} relayed nothing within {SUBJECT_START_TIMEOUT_S:g} s")
        bench.loadgen.send(probe)
        probe.first_output.wait(PROBE_PERIOD_S)
    probe.close(DRAIN_TIMEOUT_S)
    bench.tracker.forget(probe)


def measure_rate(subject: SubjectProcess, bench: Bench, rate: int, duration_s: float) -> Row:
    phase = Phase()
    unmatched_before = bench.receiver.unmatched
    cpu_before = subject.cpu_ns()
    achieved = bench.loadgen.run(phase, rate, max(1, round(rate * duration_s)))
    phase.close(DRAIN_TIMEOUT_S)
    cpu_ns = subject.cpu_ns() - cpu_before
    bench.tracker.forget(phase)
    subject.check_alive()
    sent, received, latencies = phase.snapshot()
    return Row(
        subject=subject.spec.name,
        rate=rate,
        sent=sent,
        received=received,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        max_ms=latencies[-1] / 1e6 if latencies else math.nan,
        cpu_us=cpu_ns / sent / 1e3,
        rss_mb=subject.peak_rss_mb(),
        unmatched=bench.receiver.unmatched - unmatched_before,
        achieved_rate=achieved,
    )


def measure_subject(
    spec: SubjectSpec,
    bench: Bench,
    plan: Plan,
    during: Callable[[SubjectProcess], contextlib.AbstractContextManager[Any]] | None = None,
) -> list[Row]:
    """Start the subject, warm it up and measure each rate; `during(subject)`, if given,
    is entered once the subject relays and stays open while it is measured."""
    progress(f"{spec.name}: starting")
    bench.receiver.online.clear()
    if spec.says_online:
        bench.loadgen.clear_retained(STATUS)
    with SubjectProcess(spec, bench.workdir) as subject:
        wait_ready(subject, bench)
        with during(subject) if during is not None else contextlib.nullcontext():
            progress(f"{spec.name}: warming up, {WARMUP_RATE}/s for {plan.warmup_s:g} s")
            warmup = Phase()
            bench.loadgen.run(warmup, WARMUP_RATE, max(1, round(WARMUP_RATE * plan.warmup_s)))
            warmup.close(DRAIN_TIMEOUT_S)
            bench.tracker.forget(warmup)
            rows = []
            for rate in plan.rates:
                progress(f"{spec.name}: {rate}/s for {plan.duration_s:g} s")
                rows.append(measure_rate(subject, bench, rate, plan.duration_s))
    return rows


# -- report ----------------------------------------------------------------------------


def fmt(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| rate | subject | sent | received | p50 ms | p99 ms | CPU µs/reading | peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: r.rate):  # stable: subjects keep their order
        lines.append(
            f"| {row.rate}/s | {row.subject} | {row.sent} | {row.received} "
            f"| {fmt(row.p50_ms, 3)} | {fmt(row.p99_ms, 3)} | {fmt(row.cpu_us, 1)} "
            f"| {fmt(row.rss_mb, 1)} |"
        )
    return lines


def comparison(rows: Sequence[Row], subject: str) -> list[str]:
    """`subject` against the baseline at each rate, with the targets beside."""
    by_key = {(row.subject, row.rate): row for row in rows}
    parts = []
    for rate in sorted({row.rate for row in rows}):
        mine, base = by_key.get((subject, rate)), by_key.get(("baseline", rate))
        if mine is None or base is None:
            continue
        ratio = mine.cpu_us / base.cpu_us if base.cpu_us > 0 else math.nan
        parts.append(f"{rate}/s: CPU {fmt(ratio, 2)}x, p50 {mine.p50_ms - base.p50_ms:+.3f} ms")
    if not parts:
        return []
    lines = [f"{subject} / baseline — " + "; ".join(parts)]
    if subject == "p1evse":
        peak = max(row.rss_mb for row in rows if row.subject == subject)
        lines.append(
            f"targets (informational): p50 within {TARGET_P50_DELTA_MS} ms of baseline at "
            f"every rate; CPU per reading at {TARGET_CPU_RATIO_RATE}/s ≤ "
            f"{TARGET_CPU_RATIO}x baseline; peak RSS ≤ {TARGET_RSS_MB:g} MB "
            f"(p1evse: {fmt(peak, 1)} MB)"
        )
    return lines


def details(rows: Sequence[Row]) -> list[str]:
    lines = []
    for row in sorted(rows, key=lambda r: r.rate):
        lines.append(
            f"- {row.rate}/s {row.subject}: lost {row.lost}, unmatched outputs "
            f"{row.unmatched}, max latency {fmt(row.max_ms, 3)} ms, "
            f"sent at {row.achieved_rate:.1f}/s"
        )
    return lines


def report(rows: Sequence[Row], plan: Plan, broker_version: str) -> str:
    header = (
        f"relay benchmark: mosquitto {broker_version}, Python {platform.python_version()}, "
        f"paho-mqtt {paho_version()}, {os.cpu_count()} CPUs; "
        f"{plan.duration_s:g} s per rate, readings on {DELIVERED} (QoS 0)"
    )
    lines = [header, "", *table(rows), ""]
    compared = [
        line
        for subject in dict.fromkeys(row.subject for row in rows)
        if subject != "baseline"
        for line in comparison(rows, subject)
    ]
    if compared:
        lines += [*compared, ""]
    lines += ["details:", *details(rows)]
    return "\n".join(lines)


def paho_version() -> str:
    from importlib.metadata import version

    return version("paho-mqtt")


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", default="10,100,1000", help="readings per second, comma-separated"
    )
    parser.add_argument("--duration", type=float, help="seconds per rate (default 10)")
    parser.add_argument(
        "--warmup", type=float, help=f"unmeasured seconds at {WARMUP_RATE}/s (default 1)"
    )
    parser.add_argument(
        "--subjects",
        help="comma-separated, in order: baseline, p1evse, aiomqtt (default: all available)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 s per rate, 0.3 s warm-up"
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    rates = [int(rate) for rate in args.rates.split(",") if rate.strip()]
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    return Plan(rates=rates, duration_s=duration, warmup_s=warmup)


def chosen(specs: dict[str, SubjectSpec], names: str | None) -> list[SubjectSpec]:
    if names is None:
        return list(specs.values())
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in specs]
    if unknown:
        raise BenchError(f"unknown or unavailable subjects {unknown}; available: {list(specs)}")
    return [specs[name] for name in wanted]


@contextlib.contextmanager
def interrupt_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every subprocess is stopped; SIGINT does
    so even where it was inherited as ignored (started in the background)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def compile_bytecode() -> None:
    """Compile the subjects' Python code ahead, as `pip install` (and so the Docker image)
    does. A development venv may hold none (uv's default, or PYTHONDONTWRITEBYTECODE):
    then every start compiles paho and pydantic from source, which costs several MB of
    peak RSS that a deployed service never pays."""
    paths = [sysconfig.get_paths()["purelib"], str(BENCH_DIR.parent / "src")]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *paths],
        check=True,
        stdout=subprocess.DEVNULL,
        env={key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
    )


def open_bench(stack: contextlib.ExitStack) -> tuple[Mosquitto, Bench]:
    """A private mosquitto, the load generator and the receiver, closed with `stack`."""
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="relay-bench-")))
    broker = stack.enter_context(Mosquitto(workdir))
    progress(f"mosquitto {broker.version} on {HOST}:{broker.port}")
    tracker = Tracker()
    receiver = stack.enter_context(Receiver(broker.port, tracker))
    sender = stack.enter_context(Sender(broker.port))
    return broker, Bench(broker.port, workdir, receiver, tracker, LoadGen(sender, tracker))


def run(plan: Plan, subject_names: str | None) -> str:
    progress("compiling bytecode")
    compile_bytecode()
    with contextlib.ExitStack() as stack:
        broker, bench = open_bench(stack)
        specs = chosen(subject_specs(broker.port), subject_names)
        rows: list[Row] = []
        for spec in specs:
            try:
                rows += measure_subject(spec, bench, plan)
            except BenchError as exc:
                progress(f"{spec.name}: skipped: {exc}")
        return report(rows, plan, broker.version)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    try:
        with interrupt_on_termination():
            print(run(plan, args.subjects))
    except KeyboardInterrupt:
        progress("interrupted; every subprocess has been stopped")
        return 130
    except BenchError as exc:
        progress(f"relay benchmark: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
