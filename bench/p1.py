"""P1 benchmark: how fast telegrams are read, and what `p1evse run` costs on a meter.

1. Parsing, in this process, on DSMR 5 telegrams (952 bytes, three phases, a gas meter):
   telegrams per second and CPU time per telegram for
   - dsmr-parser alone (`TelegramParser(V5).parse`, CRC included),
   - the CRC alone: dsmr-parser's `crc16` and p1evse's table loop,
   - the `p1` path with dsmr-parser as decoder (the reference): framing, CRC, parse,
     reading, pipeline (through the real `Bridge`, no sinks),
   - the `p1` path with the fast decoder (what the service uses for plain telegrams).
   Each figure is the best of 5 rounds (CPU time of this process, `time.process_time`).
2. Floods (issue: one megabyte of `/` held the event loop for 20 s): payloads of
   `/`, of random bytes and of tiny telegrams (`/!` CR LF), 1 and 10 MB, on the
   `mqtt_telegram` handler (called directly) and on the `p1` source over a loopback TCP
   connection, both into the real `Bridge`; for each, the event loop's callbacks (CPU
   time of each, `time.thread_time`), the longest, their total, and the rejections
   counted. The MQTT handler refuses a message longer than a telegram unread, so its
   largest message that is read (8,192 bytes) is measured as well.
3. The service: `p1evse run` as a subprocess (bytecode compiled first, as an installed
   package has it) reading a 1 Hz DSMR 5 stream from a TCP gateway on loopback and
   publishing to its own mosquitto; after a warm-up, CPU % (its CPU time over wall time)
   for the measured stretch, and its peak RSS (VmHWM) at the end. The published values
   are counted to show it works (one every 5 s at the default interval).

    uv run python bench/p1.py            # full: 60 s of service
    uv run python bench/p1.py --quick    # smoke: 10 s of service, fewer rounds, 1 MB floods

It prints numbers; it judges nothing (the issue's targets, 2,000 telegrams/s per core
and no callback longer than 10 ms, are shown next to them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from relay import HOST, Mosquitto, compile_bytecode, interrupt_on_termination, progress

from p1evse.bridge import Bridge
from p1evse.model import Reading, Rejection
from p1evse.pipeline import Pipeline, PublishSettings
from p1evse.sources.framing import MAX_TELEGRAM_BYTES, TelegramStream
from p1evse.sources.mqtt_telegram import MqttTelegramSettings, MqttTelegramSource
from p1evse.sources.p1 import P1Settings, P1Source
from p1evse.sources.telegram import DSMR_VERSIONS, FastDecoder, ReferenceDecoder, crc16

TARGET_PER_S = 2000
GRID_IE = "p1evse/grid_ie"
WARMUP_S = 5.0


def telegram(import_w: int) -> bytes:
    """An Iskra AM550's DSMR 5 telegram (as the real one in layout and size)."""
    lines = [
        "1-3:0.2.8(50)",
        "0-0:1.0.0(200426223325S)",
        "0-0:96.1.1(4530303435303033383833343439383137)",
        "1-0:1.8.1(002074.842*kWh)",
        "1-0:1.8.2(000881.383*kWh)",
        "1-0:2.8.1(000010.981*kWh)",
        "1-0:2.8.2(000028.031*kWh)",
        "0-0:96.14.0(0001)",
        f"1-0:1.7.0({import_w / 1000:06.3f}*kW)",
        "1-0:2.7.0(00.000*kW)",
        "0-0:96.7.21(00017)",
        "0-0:96.7.9(00007)",
        "1-0:99.97.0(0)(0-0:96.7.19)",
        "1-0:32.32.0(00002)",
        "1-0:52.32.0(00002)",
        "1-0:72.32.0(00002)",
        "1-0:32.36.0(00000)",
        "1-0:52.36.0(00000)",
        "1-0:72.36.0(00000)",
        "0-0:96.13.0()",
        "1-0:32.7.0(229.9*V)",
        "1-0:52.7.0(229.2*V)",
        "1-0:72.7.0(222.9*V)",
        "1-0:31.7.0(000*A)",
        "1-0:51.7.0(000*A)",
        "1-0:71.7.0(001*A)",
        "1-0:21.7.0(00.056*kW)",
        "1-0:41.7.0(00.000*kW)",
        "1-0:61.7.0(00.055*kW)",
        "1-0:22.7.0(00.000*kW)",
        "1-0:42.7.0(00.000*kW)",
        "1-0:62.7.0(00.000*kW)",
        "0-1:24.1.0(003)",
        "0-1:96.1.0(4730303339303031393336393930363139)",
        "0-1:24.2.1(200426223001S)(00246.138*m3)",
        "0-2:24.1.0(003)",
        "0-2:96.1.0(4730303339303031393336393930363139)",
        "0-2:24.2.1(200426223001S)(00246.138*m3)",
    ]
    body = "/ISK5\\2M550E-1011\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!"
    return f"{body}{crc16(body.encode()):04X}\r\n".encode()


# -- 1. parsing ----------------------------------------------------------------------------


def cpu_per_call(run: Callable[[int], None], count: int, rounds: int) -> float:
    """Best CPU seconds per call over `rounds` rounds of `count` calls."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run(count)
        best = min(best, (time.process_time() - started) / count)
    return best


def p1_path(decoder: FastDecoder | ReferenceDecoder, frames: list[bytes]) -> Callable[[int], None]:
    """Bytes in, through framing, decoding and the real Bridge and Pipeline."""
    loop = asyncio.new_event_loop()  # for its clock and timers; never run
    bridge = Bridge(Pipeline(PublishSettings(), loop.time()), [], loop)
    stream = TelegramStream(decoder, bridge, loop.time)

    def run(count: int) -> None:
        for index in range(count):
            stream.feed(frames[index % len(frames)])
        assert stream.telegrams > 0

    return run


def parsing(rounds: int, count: int) -> list[tuple[str, float]]:
    from dsmr_parser import telegram_specifications
    from dsmr_parser.parsers import TelegramParser

    frames = [telegram(100 + i) for i in range(100)]
    texts = [frame.decode() for frame in frames]
    bodies = [text[: text.index("!") + 1] for text in texts]
    parser = TelegramParser(telegram_specifications.V5)
    version = DSMR_VERSIONS["5"]

    def dsmr_parser_alone(n: int) -> None:
        for index in range(n):
            parser.parse(texts[index % 100])

    def dsmr_parser_crc(n: int) -> None:
        for index in range(n):
            TelegramParser.crc16(bodies[index % 100])

    def table_crc(n: int) -> None:
        for index in range(n):
            crc16(frames[index % 100])

    slow = max(count // 10, 50)
    return [
        ("dsmr-parser alone (parse + CRC)", cpu_per_call(dsmr_parser_alone, slow, rounds)),
        ("CRC16: dsmr-parser's crc16", cpu_per_call(dsmr_parser_crc, slow, rounds)),
        ("CRC16: p1evse's table loop", cpu_per_call(table_crc, count, rounds)),
        (
            "p1 path, dsmr-parser decoder (frame + CRC + parse + pipeline)",
            cpu_per_call(p1_path(ReferenceDecoder(version), frames), slow, rounds),
        ),
        (
            "p1 path, fast decoder (frame + CRC + parse + pipeline)",
            cpu_per_call(p1_path(FastDecoder(version), frames), count, rounds),
        ),
    ]


# -- 2. floods ------------------------------------------------------------------------------

CALLBACK_TARGET_MS = 10.0
FLOODS: dict[str, Callable[[int], bytes]] = {
    "/": lambda size: b"/" * size,
    "random bytes": lambda size: random.Random(size).randbytes(size),
    "tiny telegrams": lambda size: b"/!\r\n" * (size // 4),
}


@dataclass
class FloodRow:
    source: str
    payload: str
    size: int
    callbacks: list[float]  # CPU seconds of each
    rejections: int


class UntilReading:
    """The bridge as intake, and an event for the first reading (the telegram after
    the flood)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.read = asyncio.Event()

    def reading(self, reading: Reading) -> None:
        self.bridge.reading(reading)
        self.read.set()

    def reject(self, reason: Rejection, detail: str) -> None:
        self.bridge.reject(reason, detail)

    @property
    def rejections(self) -> int:
        return sum(self.bridge.pipeline.counters.rejected.values())


@contextlib.contextmanager
def callback_cpu() -> Iterator[list[float]]:
    """The CPU time of every callback the event loop runs while it is in effect."""
    times: list[float] = []
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        started = time.thread_time()
        try:
            run(handle)
        finally:
            times.append(time.thread_time() - started)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    try:
        yield times
    finally:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]


def new_bridge(loop: asyncio.AbstractEventLoop) -> Bridge:
    return Bridge(Pipeline(PublishSettings(), loop.time()), [], loop)


def mqtt_flood(payload: str, size: int) -> FloodRow:
    loop = asyncio.new_event_loop()  # for its clock; the handler is called directly
    try:
        intake = UntilReading(new_bridge(loop))
        source = MqttTelegramSource(MqttTelegramSettings(), broker=None)  # type: ignore[arg-type]
        handle = source.handler(intake, loop.time)
        data = FLOODS[payload](size)
        started = time.thread_time()
        handle(data)
        cpu = time.thread_time() - started
        return FloodRow("mqtt_telegram", payload, size, [cpu], intake.rejections)
    finally:
        loop.close()


def send_once(data: bytes) -> tuple[int, Callable[[], None]]:
    """A TCP gateway on loopback, in a thread, that sends `data` to its first client."""
    server = socket.create_server((HOST, 0))
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = server.accept()
            with connection:
                connection.sendall(data)
                done.wait(60)

    thread = threading.Thread(target=serve, daemon=True, name="flood-gateway")
    thread.start()

    def stop() -> None:
        done.set()
        server.close()
        thread.join(5)

    return server.getsockname()[1], stop


async def tcp_flood(payload: str, size: int) -> FloodRow:
    loop = asyncio.get_running_loop()
    intake = UntilReading(new_bridge(loop))
    port, stop = send_once(FLOODS[payload](size) + telegram(321))
    source = P1Source(P1Settings(url=f"tcp://{HOST}:{port}"))
    try:
        task = asyncio.create_task(source.run(intake))  # type: ignore[arg-type]
        with callback_cpu() as callbacks:
            await asyncio.wait_for(intake.read.wait(), 120)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        stop()
    return FloodRow("p1 over TCP", payload, size, callbacks, intake.rejections)


def floods(sizes: Sequence[int]) -> list[FloodRow]:
    import serialx  # noqa: F401  # the p1 source imports it on first use (~60 ms), not measured

    rows = [mqtt_flood(payload, MAX_TELEGRAM_BYTES) for payload in FLOODS]
    for size in sizes:
        for payload in FLOODS:
            progress(f"floods: {size // 1_000_000} MB of {payload}")
            rows.append(mqtt_flood(payload, size))
            rows.append(asyncio.run(tcp_flood(payload, size)))
    return rows


def flood_report(rows: Sequence[FloodRow]) -> list[str]:
    lines = [
        f"Floods: CPU time of the event loop's callbacks (target: none over "
        f"{CALLBACK_TARGET_MS:g} ms)",
        "",
        "| source | payload | bytes | callbacks | longest | total | rejections |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.source} | {row.payload} | {row.size:,} | {len(row.callbacks):,} "
            f"| {1000 * max(row.callbacks):.2f} ms | {1000 * sum(row.callbacks):.1f} ms "
            f"| {row.rejections:,} |"
        )
    return lines


# -- 3. the service --------------------------------------------------------------------------


class Gateway:
    """A TCP gateway on loopback that sends one telegram a second to whoever connects."""

    def __init__(self) -> None:
        self._server = socket.create_server((HOST, 0))
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._serve, daemon=True, name="gateway")

    def __enter__(self) -> Gateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(5)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self._server.accept()
            with connection:
                next_at = time.monotonic()
                while not self._stop.is_set():
                    connection.sendall(telegram(1000 + self.sent % 500))
                    self.sent += 1
                    next_at += 1.0
                    self._stop.wait(max(0.0, next_at - time.monotonic()))


class Counter:
    """Counts the values p1evse publishes."""

    def __init__(self, port: int) -> None:
        self.values: list[str] = []
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="p1-bench-counter")
        self._client.on_connect = lambda client, *args: client.subscribe(GRID_IE)
        self._client.on_message = lambda client, userdata, message: self.values.append(
            message.payload.decode()
        )
        self._client.connect(HOST, port)

    def __enter__(self) -> Counter:
        self._client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of all its threads."""
    try:
        # clock_getcpuclockid(pid): the scheduler's exact per-process CPU clock
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = int(rest.split()[0]) / 1024
    return values


def service(duration_s: float) -> list[str]:
    progress("compiling bytecode")
    compile_bytecode()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="p1-bench-")))
        broker = stack.enter_context(Mosquitto(workdir))
        gateway = stack.enter_context(Gateway())
        counter = stack.enter_context(Counter(broker.port))
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("P1EVSE_")}
        env.update(
            P1EVSE_MQTT__HOST=HOST,
            P1EVSE_MQTT__PORT=str(broker.port),
            P1EVSE_SOURCE__TYPE="p1",
            P1EVSE_SOURCE__URL=f"tcp://{HOST}:{gateway.port}",
            P1EVSE_WEB__LISTEN="",
        )
        log = (workdir / "p1evse.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "p1evse", "run"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            progress(f"p1evse run: warming up {WARMUP_S:g} s, then measuring {duration_s:g} s")
            time.sleep(WARMUP_S)  # the benchmark's own clock: a fixed stretch is the point
            values_before = len(counter.values)
            cpu_before, started = cpu_seconds(process.pid), time.monotonic()
            time.sleep(duration_s)
            cpu = cpu_seconds(process.pid) - cpu_before
            wall = time.monotonic() - started
            memory = memory_mb(process.pid)
            published = len(counter.values) - values_before
            if process.poll() is not None:
                raise RuntimeError((workdir / "p1evse.log").read_text()[-800:])
        finally:
            process.terminate()
            process.wait(10)
            log.close()
        return [
            f"p1evse run, 1 Hz DSMR 5 over TCP, {wall:.0f} s after a {WARMUP_S:g} s warm-up:",
            f"  CPU {100 * cpu / wall:.2f} % of one core ({1000 * cpu / wall:.1f} ms per second)",
            f"  RSS peak {memory['VmHWM']:.1f} MB, at the end {memory['VmRSS']:.1f} MB",
            f"  telegrams sent {gateway.sent}, values published in the measured stretch "
            f"{published} (publish.interval 5 s)",
        ]


def report(
    rows: Sequence[tuple[str, float]],
    flood_rows: Sequence[FloodRow],
    service_lines: Sequence[str],
) -> str:
    header = (
        f"P1 benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"DSMR 5 telegram of {len(telegram(1000))} bytes"
    )
    lines = [header, "", "| path | telegrams/s | CPU per telegram |", "| --- | ---: | ---: |"]
    for name, seconds in rows:
        lines.append(f"| {name} | {1 / seconds:,.0f} | {seconds * 1e6:,.0f} µs |")
    fast = rows[-1][1]
    reference = rows[-2][1]
    lines += [
        "",
        f"fast path: {1 / fast:,.0f} telegrams/s per core (target {TARGET_PER_S:,}); "
        f"{reference / fast:.1f}x the dsmr-parser path",
        "",
        *flood_report(flood_rows),
        "",
        *service_lines,
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s of service, fewer rounds")
    parser.add_argument("--duration", type=float, help="seconds of service to measure")
    args = parser.parse_args(argv)
    duration = args.duration or (10.0 if args.quick else 60.0)
    rounds, count = (2, 500) if args.quick else (5, 3000)
    try:
        with interrupt_on_termination():
            progress("parsing")
            rows = parsing(rounds, count)
            flood_rows = floods([1_000_000] if args.quick else [1_000_000, 10_000_000])
            print(report(rows, flood_rows, service(duration)))
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
