"""Status page benchmark: what the page weighs, what the web server costs in memory, and
whether open pages slow down publishing.

It runs `p1evse run` (relay mode, `publish.interval: 0`) against its own mosquitto, with
bench/relay.py's load generator and receiver, as three subjects:

- `web off`: `web.listen` empty (the page's code is never imported),
- `web on`: the status page served, no page open,
- `web on, N pages`: N clients (default 20) holding the page's event stream open and
  reading it, as open browser tabs do, for the whole measurement;
- `web on, N hostile`: N connections (default 1000) that attack the port for the whole
  measurement: half send a request's headers a byte a second and never finish
  (slowloris), half open the event stream and never read it. Each one the service closes,
  refuses or cuts off is opened again a second later, so N attempts are always under way.
  The service runs with the systemd unit's file limit (`LimitNOFILE=1024`).

For each it reports publish latency (reading in -> value out through the broker, p50 and
p99) at each input rate and the process' peak RSS, and for `web on` the bytes of
everything the page loads: the HTML, its static files, and the event stream's first
message (the whole state and chart), measured as served, plus that first message as it
would be with a full hour of chart (one row per second) and the "today" chart with a
full day (one row per minute), both built in this process.

    uv run python bench/web.py             # 10/s and 100/s, 10 s each; about 2 minutes
    uv run python bench/web.py --quick     # smoke run
    uv run python bench/web.py --pages 20 --hostile 1000 --rates 10 --duration 30

The bench process needs a file per hostile connection: it raises its own soft limit
(`ulimit -n`) as far as the hard limit allows, and says so when that is not enough.

It prints a markdown table on stdout (progress goes to stderr) and judges nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import math
import multiprocessing
import os
import re
import resource
import select
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

from relay import (
    HOST,
    BenchError,
    Plan,
    Row,
    SubjectProcess,
    SubjectSpec,
    compile_bytecode,
    fmt,
    free_port,
    interrupt_on_termination,
    measure_subject,
    open_bench,
    progress,
    subject_specs,
)

from p1evse.web.settings import WebSettings

PAGE_TIMEOUT_S = 10.0
READ_SIZE = 65536
SERVICE_OPEN_FILES = 1024  # deploy/p1evse.service: LimitNOFILE
BENCH_OPEN_FILES = 256  # this process' own: the broker, the load, the receiver, pages
RECONNECT_S = 1.0  # a hostile connection that was closed is opened again after this
TRICKLE_S = 1.0  # a slowloris connection sends one more byte of its headers this often
HOSTILE_RCVBUF = 4096  # a stream that never reads: its window closes soon
CROWD_NICE = 10
DEFAULT_MAX_STREAMS = WebSettings().max_streams
DEFAULT_MAX_CONNECTIONS = WebSettings().max_connections


@dataclass
class Weight:
    files: dict[str, int]
    first_message: int


class Page(threading.Thread):
    """An open page's event stream, read as it comes (like a browser tab)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True, name=f"page-{port}")
        self.received = 0
        self.started = threading.Event()
        self._sock = socket.create_connection((HOST, port), timeout=PAGE_TIMEOUT_S)
        self._sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")

    def run(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.settimeout(None)
            while chunk := self._sock.recv(READ_SIZE):
                self.received += len(chunk)
                if b"\n\n" in chunk:
                    self.started.set()
        self.started.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


@contextlib.contextmanager
def open_pages(port: int, count: int) -> Iterator[list[Page]]:
    pages = [Page(port) for _ in range(count)]
    try:
        for page in pages:
            page.start()
        for page in pages:
            if not page.started.wait(PAGE_TIMEOUT_S):
                raise BenchError("a page got no first message")
        progress(f"{count} pages open")
        yield pages
    finally:
        for page in pages:
            page.close()
        for page in pages:
            page.join(PAGE_TIMEOUT_S)


@dataclass
class Attempt:
    """One hostile connection slot: its socket while open, and what it does."""

    slowloris: bool
    sock: socket.socket | None = None
    connected: bool = False
    generation: int = 0  # its timer's: one scheduled before a reconnect is void


class HostileCrowd:
    """`count` connections attacking the page's port from one epoll loop, in a process of
    its own: its work holds no lock of the bench's sender and receiver, and, niced, it
    leaves the CPU to the service first (a real attacker brings its own)."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.attempts = [Attempt(slowloris=i % 2 == 0) for i in range(count)]
        self.opened = 0  # connections opened
        self.ended = 0  # connections the service closed, refused or cut off
        self._poll = select.epoll()
        self._by_fd: dict[int, int] = {}
        self._timers = [(0.0, i, 0) for i in range(count)]  # (due, attempt, generation)

    def run(self, stopping: Event) -> tuple[int, int, int]:
        """Attack until `stopping`; then (opened, ended, still open or connecting)."""
        while not stopping.is_set():
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, index, generation = heapq.heappop(self._timers)
                if generation == self.attempts[index].generation:
                    self._act(index, now)
            wait = self._timers[0][0] - now if self._timers else TRICKLE_S
            for fd, events in self._poll.poll(min(max(wait, 0.0), 0.1)):
                index = self._by_fd.get(fd)
                if index is not None:
                    self._event(index, events, time.monotonic())
        still_open = sum(1 for attempt in self.attempts if attempt.sock is not None)
        for index in range(len(self.attempts)):
            self._drop(index)
        self._poll.close()
        return self.opened, self.ended, still_open

    def _later(self, index: int, due: float) -> None:
        attempt = self.attempts[index]
        attempt.generation += 1
        heapq.heappush(self._timers, (due, index, attempt.generation))

    def _act(self, index: int, now: float) -> None:
        attempt = self.attempts[index]
        if attempt.sock is None:
            self._connect(index, now)
        elif attempt.connected and attempt.slowloris:
            self._send(index, b"X", now)
            if attempt.sock is not None:
                self._later(index, now + TRICKLE_S)

    def _connect(self, index: int, now: float) -> None:
        attempt = self.attempts[index]
        sock = socket.socket()
        sock.setblocking(False)
        if not attempt.slowloris:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, HOSTILE_RCVBUF)
        sock.connect_ex((HOST, self.port))
        attempt.sock, attempt.connected = sock, False
        self._by_fd[sock.fileno()] = index
        self._poll.register(sock, select.EPOLLOUT | select.EPOLLRDHUP)
        self.opened += 1

    def _event(self, index: int, events: int, now: float) -> None:
        attempt = self.attempts[index]
        if events & (select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP):
            self._ended(index, now)
        elif events & select.EPOLLOUT and attempt.sock is not None and not attempt.connected:
            attempt.connected = True
            self._poll.modify(attempt.sock, select.EPOLLRDHUP)  # never EPOLLIN: never read
            if attempt.slowloris:
                self._send(index, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", now)
                self._later(index, now + TRICKLE_S)
            else:
                self._send(index, b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n", now)

    def _send(self, index: int, data: bytes, now: float) -> None:
        sock = self.attempts[index].sock
        assert sock is not None
        try:
            sock.send(data)
        except BlockingIOError:
            pass  # its buffer is full: the same as a slower attacker
        except OSError:
            self._ended(index, now)

    def _ended(self, index: int, now: float) -> None:
        """The service closed it: open it again a little later."""
        self.ended += 1
        self._drop(index)
        self._later(index, now + RECONNECT_S)

    def _drop(self, index: int) -> None:
        attempt = self.attempts[index]
        sock = attempt.sock
        if sock is None:
            return
        self._by_fd.pop(sock.fileno(), None)
        with contextlib.suppress(OSError):
            self._poll.unregister(sock)
        sock.close()
        attempt.sock, attempt.connected = None, False


def attack(port: int, count: int, stopping: Event, results: Connection) -> None:
    """The crowd's process."""
    os.nice(CROWD_NICE)
    results.send(HostileCrowd(port, count).run(stopping))


@dataclass
class CrowdReport:
    count: int = 0
    opened: int = 0
    ended: int = 0
    seconds: float = 0.0
    open_at_end: int = 0


@contextlib.contextmanager
def hostile(subject: SubjectProcess, port: int, count: int, report: CrowdReport) -> Iterator[None]:
    # the service's files as under systemd (bench/relay.py starts it with this process')
    resource.prlimit(subject.pid, resource.RLIMIT_NOFILE, (SERVICE_OPEN_FILES,) * 2)
    spawn = multiprocessing.get_context("spawn")
    stopping = spawn.Event()
    results, sender = spawn.Pipe(duplex=False)
    crowd = spawn.Process(target=attack, args=(port, count, stopping, sender), name="hostile")
    started = time.monotonic()
    crowd.start()
    progress(f"{count} hostile connections attacking")
    try:
        yield
    finally:
        stopping.set()
        if not results.poll(PAGE_TIMEOUT_S):
            crowd.kill()
            raise BenchError("the hostile crowd did not report")
        report.opened, report.ended, report.open_at_end = results.recv()
        report.count, report.seconds = count, time.monotonic() - started
        crowd.join(PAGE_TIMEOUT_S)


def raise_open_files(needed: int) -> None:
    """This process' soft limit of open files, raised to `needed` if the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(
            f"--hostile needs {needed} open files, but this shell allows at most {hard} "
            f"(ulimit -Hn): raise it, or ask for fewer"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    progress(f"open files: soft limit raised from {soft} to {needed}")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=PAGE_TIMEOUT_S) as response:
        body: bytes = response.read()
        return body


def first_message(port: int) -> int:
    """Bytes of the event stream's first message (headers not counted)."""
    with socket.create_connection((HOST, port), timeout=PAGE_TIMEOUT_S) as sock:
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1].count(b"\n\n"):
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                break
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    # chunked transfer encoding: the first chunk's size line, then the message
    size_line, _, rest = body.partition(b"\r\n")
    return int(size_line, 16) if re.fullmatch(rb"[0-9a-fA-F]+", size_line) else len(rest)


def page_weight(port: int) -> Weight:
    base = f"http://{HOST}:{port}/"
    page = fetch(base)
    files = {"/": len(page)}
    for asset in sorted(set(re.findall(rb'(?:src|href)="([^"]+)"', page))):
        files[asset.decode()] = len(fetch(base + asset.decode()))
    return Weight(files, first_message(port))


def full_chart_sizes() -> tuple[int, int]:
    """The first message with a full hour of chart, and /api/history?range=today with a
    full day: a meter at 1 Hz, a value every 5 s, and a charger whose current changes
    every 5 s (divert at work), for 24 h (the day a minute a row, local midnight being
    taken as 24 h ago)."""
    import asyncio
    import json

    from p1evse.config import Settings
    from p1evse.model import GridPower, Reading
    from p1evse.pipeline import Counters
    from p1evse.sinks.charger import ChargerState
    from p1evse.site import new_state
    from p1evse.web.stream import Fanout, StatePush

    loop = asyncio.new_event_loop()
    try:
        now = time.monotonic()
        day_s = 24 * 3600
        charger = ChargerState()
        state = new_state(
            Settings(), Counters(), lambda: now, charger=charger, day_start=lambda t: t - day_s
        )
        for second in range(day_s):
            at = now - day_s + second + 0.5
            if second % 5 == 0:
                charger.update("amp", str(6000 + (second * 137) % 10000).encode(), at)
            state.observe(Reading(at, 1234.0 + second % 700, 0.0))
            if second % 5 == 0:
                state.observe(GridPower(at, 1500 + second % 700, 5))
        today = json.dumps(state.history_json(range_="today"), separators=(",", ":"))
        return len(StatePush(state, Fanout(), loop).first_message()), len(today)
    finally:
        loop.close()


def web_spec(base: SubjectSpec, name: str, port: int, pages: int = 0) -> SubjectSpec:
    """The service with its page on `port`, its defaults raised to let `pages` in."""
    env = {**base.env, "P1EVSE_WEB__LISTEN": f"{HOST}:{port}"}
    if pages > DEFAULT_MAX_STREAMS:
        env["P1EVSE_WEB__MAX_STREAMS"] = str(pages)
        env["P1EVSE_WEB__MAX_CONNECTIONS"] = str(max(DEFAULT_MAX_CONNECTIONS, 2 * pages))
    return SubjectSpec(name, base.argv, env, says_online=True)


def report(
    rows: Sequence[Row],
    weight: Weight | None,
    full_chart: tuple[int, int],
    pages: int,
    crowd: CrowdReport,
) -> str:
    lines = [
        "| rate | subject | sent | received | p50 ms | p99 ms | max ms | CPU µs/reading "
        "| peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: r.rate):
        lines.append(
            f"| {row.rate}/s | {row.subject} | {row.sent} | {row.received} "
            f"| {fmt(row.p50_ms, 3)} | {fmt(row.p99_ms, 3)} | {fmt(row.max_ms, 3)} "
            f"| {fmt(row.cpu_us, 1)} | {fmt(row.rss_mb, 1)} |"
        )
    if weight is not None:
        files = sum(weight.files.values())
        lines += [
            "",
            "page weight (bytes as served, uncompressed):",
            *(f"- {name}: {size}" for name, size in weight.files.items()),
            f"- files together: {files}",
            f"- event stream, first message at start-up: {weight.first_message}",
            f"- everything at start-up: {files + weight.first_message}",
            f"- event stream, first message with a full hour of chart: {full_chart[0]} "
            f"(everything then: {files + full_chart[0]})",
            f"- /api/history?range=today with a full day of chart: {full_chart[1]}",
        ]
    lines += ["", f"pages: {pages} open event streams, each read as it arrives"]
    if crowd.count:
        rate = crowd.opened / crowd.seconds if crowd.seconds else math.nan
        lines += [
            f"hostile: {crowd.count} connections (half slowloris, half streams that never "
            f"read), the service with {SERVICE_OPEN_FILES} open files; over "
            f"{crowd.seconds:.0f} s they opened {crowd.opened} connections "
            f"({fmt(rate, 0)}/s), the service ended {crowd.ended} of them, "
            f"{crowd.open_at_end} were open or connecting at the end",
            "",
            "p99 publish latency, no page open vs the hostile crowd:",
        ]
        quiet = {row.rate: row for row in rows if row.subject == "web on"}
        for row in rows:
            if row.subject.endswith(" hostile") and row.rate in quiet:
                lines.append(
                    f"- {row.rate}/s: {fmt(quiet[row.rate].p99_ms, 3)} ms vs "
                    f"{fmt(row.p99_ms, 3)} ms (max {fmt(quiet[row.rate].max_ms, 3)} ms vs "
                    f"{fmt(row.max_ms, 3)} ms)"
                )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,100", help="readings per second, comma-separated")
    parser.add_argument("--duration", type=float, help="seconds per rate (default 10)")
    parser.add_argument("--pages", type=int, default=20, help="open pages (default 20)")
    parser.add_argument(
        "--hostile", type=int, default=1000, help="hostile connections (default 1000; 0: none)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per rate")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 10.0)
    plan = Plan(
        rates=[int(rate) for rate in args.rates.split(",") if rate.strip()],
        duration_s=duration,
        warmup_s=0.3 if args.quick else 1.0,
    )
    raise_open_files(args.hostile + args.pages + BENCH_OPEN_FILES)
    progress("compiling bytecode")
    compile_bytecode()
    weight: Weight | None = None
    crowd = CrowdReport()
    with contextlib.ExitStack() as stack:
        broker, bench = open_bench(stack)
        base = subject_specs(broker.port)["p1evse"]
        rows: list[Row] = []
        off = SubjectSpec("web off", base.argv, base.env, says_online=True)
        rows += measure_subject(off, bench, plan)

        port = free_port()

        def weigh(subject: SubjectProcess) -> contextlib.AbstractContextManager[None]:
            nonlocal weight
            weight = page_weight(port)
            return contextlib.nullcontext()

        rows += measure_subject(web_spec(base, "web on", port), bench, plan, during=weigh)
        port = free_port()
        rows += measure_subject(
            web_spec(base, f"web on, {args.pages} pages", port, pages=args.pages),
            bench,
            plan,
            during=lambda subject: open_pages(port, args.pages),
        )
        if args.hostile:
            port = free_port()
            rows += measure_subject(
                web_spec(base, f"web on, {args.hostile} hostile", port),
                bench,
                plan,
                during=lambda subject: hostile(subject, port, args.hostile, crowd),
            )
    return report(rows, weight, full_chart_sizes(), args.pages, crowd)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with interrupt_on_termination():
            print(run(args))
    except KeyboardInterrupt:
        progress("interrupted; every subprocess has been stopped")
        return 130
    except BenchError as exc:
        progress(f"web benchmark: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
