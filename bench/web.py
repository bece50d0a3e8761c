"""Status page benchmark: what the page weighs, what the web server costs in memory, and
whether open pages slow down publishing.

It runs `p1evse run` (relay mode, `publish.interval: 0`) against its own mosquitto, with
bench/relay.py's load generator and receiver, as three subjects:

- `web off`: `web.listen` empty (aiohttp is never imported),
- `web on`: the status page served, no page open,
- `web on, N pages`: N clients (default 20) holding the page's event stream open and
  reading it, as open browser tabs do, for the whole measurement.

For each it reports publish latency (reading in -> value out through the broker, p50 and
p99) at each input rate and the process' peak RSS, and for `web on` the bytes of
everything the page loads: the HTML, its static files, and the event stream's first
message (the whole state and chart), measured as served, plus that first message as it
would be with a full hour of chart (one row per second) built in this process.

    uv run python bench/web.py             # 10/s and 100/s, 10 s each; about 1.5 minutes
    uv run python bench/web.py --quick     # smoke run
    uv run python bench/web.py --pages 20 --rates 10 --duration 30

It prints a markdown table on stdout (progress goes to stderr) and judges nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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

PAGE_TIMEOUT_S = 10.0
READ_SIZE = 65536


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
        self._sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: bench\r\n\r\n")

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


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=PAGE_TIMEOUT_S) as response:
        body: bytes = response.read()
        return body


def first_message(port: int) -> int:
    """Bytes of the event stream's first message (headers not counted)."""
    with socket.create_connection((HOST, port), timeout=PAGE_TIMEOUT_S) as sock:
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: bench\r\n\r\n")
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


def full_hour_first_message() -> int:
    """The first message with a full hour of chart: a meter at 1 Hz, a value every 5 s,
    and a charger whose current changes every 5 s (divert at work)."""
    import asyncio

    from p1evse.config import Settings
    from p1evse.model import GridPower, Reading
    from p1evse.pipeline import Counters
    from p1evse.sinks.charger import ChargerState
    from p1evse.state import SiteState
    from p1evse.web.stream import Fanout, StatePush

    loop = asyncio.new_event_loop()
    try:
        now = time.monotonic()
        charger = ChargerState()
        state = SiteState(Settings(), Counters(), lambda: now, charger=charger)
        for second in range(3600):
            at = now - 3600 + second + 0.5
            if second % 5 == 0:
                charger.update("amp", str(6000 + (second * 137) % 10000).encode(), at)
            state.observe(Reading(at, 1234.0 + second % 700, 0.0))
            if second % 5 == 0:
                state.observe(GridPower(at, 1500 + second % 700, 5))
        return len(StatePush(state, Fanout(), loop).first_message())
    finally:
        loop.close()


def web_spec(base: SubjectSpec, name: str, port: int) -> SubjectSpec:
    env = {**base.env, "P1EVSE_WEB__LISTEN": f"{HOST}:{port}"}
    return SubjectSpec(name, base.argv, env, says_online=True)


def report(rows: Sequence[Row], weight: Weight | None, full_hour: int, pages: int) -> str:
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
            f"- event stream, first message with a full hour of chart: {full_hour} "
            f"(everything then: {files + full_hour})",
        ]
    lines += ["", f"pages: {pages} open event streams, each read as it arrives"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,100", help="readings per second, comma-separated")
    parser.add_argument("--duration", type=float, help="seconds per rate (default 10)")
    parser.add_argument("--pages", type=int, default=20, help="open pages (default 20)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s per rate")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 10.0)
    plan = Plan(
        rates=[int(rate) for rate in args.rates.split(",") if rate.strip()],
        duration_s=duration,
        warmup_s=0.3 if args.quick else 1.0,
    )
    progress("compiling bytecode")
    compile_bytecode()
    weight: Weight | None = None
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
            web_spec(base, f"web on, {args.pages} pages", port),
            bench,
            plan,
            during=lambda subject: open_pages(port, args.pages),
        )
    return report(rows, weight, full_hour_first_message(), args.pages)


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
