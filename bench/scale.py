"""Fleet benchmark: `p1evse run` serving many sites on one mosquitto.

For each number of sites (default 1, 100, 1,000 and 10,000), every site's meter sends
one reading a second the way DSMR-reader does (two messages: `..._delivered` with the
value, `..._returned` with 0), spread evenly over the second, and p1evse relays each
reading (`publish.interval: 0`) to the site's `p1evse/<site>/grid_ie`. Then, with the
largest count, the rate per site goes up until p1evse falls behind. Last, the same load
(`--split-sites`) is served by 1, 2 and 4 processes with live membership. With
`--share`, the one-process rows subscribe as the one member of a shared subscription
(`fleet.share_group`), and so also hear every charger's feed back (what a process of a
fleet that the broker deals does).

What it reports, per row, over the measured stretch (after every site exists and has
been fed once):

- inbound messages/s p1evse received (two per reading) and outputs/s,
- latency from the meter's publish to the grid_ie arriving back here (p50, p99, max):
  two broker hops and p1evse,
- CPU time of the p1evse process(es) per inbound message, and their share of a core,
- RSS of the p1evse process(es), and per 1,000 sites above an idle process,
- the longest event-loop delay seen inside p1evse (from its /metrics histogram:
  the bucket's upper bound),
- lost readings (sent, no output by the end of the drain).

The load generator and the receiver are raw MQTT 3.1.1 sockets in this process (one
thread each; packets built by hand, many per write and per read), so that they cost a
few µs per message and leave the cores to the broker and p1evse. On a 2-core machine
all of it still shares two cores: read the numbers as what this machine allows.

    uv run python bench/scale.py                     # about 3 minutes
    uv run python bench/scale.py --sites 1000 --duration 10 --no-ramp --no-split
    uv run python bench/scale.py --profile 10000     # also a cProfile of p1evse at 10,000

It prints markdown tables on stdout (progress goes to stderr); it judges nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
DELIVERED = "dsmr/{}/reading/electricity_currently_delivered"
RETURNED = "dsmr/{}/reading/electricity_currently_returned"
GRID_IE = "p1evse/+/grid_ie"
TICK_S = 0.01  # the load generator sends what is due every 10 ms
DRAIN_S = 5.0
START_TIMEOUT_S = 60.0
MAX_VALUE = 40_000  # W; readings carry 1..MAX_VALUE so outputs match their readings


def varint(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + varint(len(body)) + body


def utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """QoS 0 PUBLISH; `topic` already with its length prefix."""
    return packet(0x30, topic + payload)


class RawClient:
    """An MQTT 3.1.1 client on a plain socket: connect, subscribe, send, read frames."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        body = utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 600) + utf8(client_id)
        self.sock.sendall(packet(0x10, body))
        self._buffer = bytearray()
        kind, _ = next(self.frames())
        if kind != 0x20:
            raise RuntimeError("no CONNACK")

    def subscribe(self, topic: str) -> None:
        self.sock.sendall(packet(0x82, struct.pack("!H", 1) + utf8(topic) + b"\x00"))

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(first byte, body) of each packet as it comes; ends when the socket does."""
        buffer = self._buffer
        while True:
            while True:
                if len(buffer) < 2:
                    break
                length, shift, index = 0, 0, 1
                while True:
                    if index >= len(buffer):
                        length = -1
                        break
                    byte = buffer[index]
                    length |= (byte & 0x7F) << shift
                    index += 1
                    if not byte & 0x80:
                        break
                    shift += 7
                if length < 0 or len(buffer) < index + length:
                    break
                yield buffer[0], bytes(buffer[index : index + length])
                del buffer[: index + length]
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            buffer += chunk

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
        finally:
            self.sock.close()


@dataclass
class Load:
    """The sites' readings: when each was sent, and what came back."""

    sites: list[str]
    rate_per_site: float = 1.0
    sent_ns: list[dict[int, int]] = field(default_factory=list)  # per site: value -> ns
    latencies_ns: list[int] = field(default_factory=list)
    sent: int = 0  # readings sent in the current stretch
    received: int = 0  # outputs matched to a reading, ever
    measuring: bool = False
    next_site: int = 0
    values: list[int] = field(default_factory=list)  # per site: its last value

    def __post_init__(self) -> None:
        self.sent_ns = [{} for _ in self.sites]
        self.values = [0] * len(self.sites)
        self.index = {
            f"p1evse/{site}/grid_ie".encode(): number for number, site in enumerate(self.sites)
        }


def send_readings(client: RawClient, load: Load, seconds: float) -> None:
    """Each site `rate_per_site` readings a second, the sites in turn, spread evenly;
    what is due is sent every 10 ms, in one write."""
    sites = load.sites
    delivered = [utf8(DELIVERED.format(site)) for site in sites]
    returned = [publish_packet(utf8(RETURNED.format(site)), b"0") for site in sites]
    per_second = len(sites) * load.rate_per_site
    load.sent = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        batch = []
        now_ns = time.perf_counter_ns()
        for _ in range(int(elapsed * per_second) + 1 - load.sent):
            site = load.next_site
            load.next_site = (site + 1) % len(sites)
            value = load.values[site] = load.values[site] % MAX_VALUE + 1
            load.sent_ns[site][value] = now_ns
            batch.append(publish_packet(delivered[site], str(value).encode()))
            batch.append(returned[site])
            load.sent += 1
        if batch:
            client.sock.sendall(b"".join(batch))
        time.sleep(max(0.0, TICK_S - (time.perf_counter() - start - elapsed)))


def receive_outputs(client: RawClient, load: Load) -> None:
    with contextlib.suppress(OSError):  # closed at the end of the row
        receive(client, load)


def receive(client: RawClient, load: Load) -> None:
    index, sent_ns = load.index, load.sent_ns
    for kind, body in client.frames():
        if kind & 0xF0 != 0x30:
            continue
        now_ns = time.perf_counter_ns()
        topic_length = struct.unpack_from("!H", body)[0]
        site = index.get(body[2 : 2 + topic_length])
        if site is None:
            continue
        try:
            value = int(body[2 + topic_length :])
        except ValueError:
            continue
        at = sent_ns[site].pop(value, None)
        if at is None:
            continue
        load.received += 1
        if load.measuring:
            load.latencies_ns.append(now_ns - at)


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\nmax_queued_messages 1000000\n"
        "max_inflight_messages 0\nset_tcp_nodelay true\npersistence false\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


CONFIG = """\
source:
  delivered_topic: dsmr/+/reading/electricity_currently_delivered
  returned_topic: dsmr/+/reading/electricity_currently_returned
  unit: W
publish:
  interval: 0
  stale_after: 30
openevse:
  grid_ie_topic: p1evse/{{site}}/grid_ie
  base_topic: openevse/{{site}}
  deadman: false
mqtt:
  port: {port}
  state_topic: null
fleet:
  max_sites: 100000
  membership: {membership}
{sites}log:
  level: warning
"""


@dataclass
class Subject:
    process: subprocess.Popen[bytes]
    listen: str

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.listen}/metrics", timeout=10) as answer:
            return str(answer.read().decode())

    def loop_lag_counts(self) -> dict[str, float]:
        counts = {}
        for line in self.metrics().splitlines():
            if line.startswith("p1evse_loop_lag_seconds_bucket"):
                bound = line.split('le="')[1].split('"')[0]
                counts[bound] = float(line.rsplit(" ", 1)[1])
        return counts


def start_p1evse(
    workdir: Path,
    port: int,
    name: str,
    membership: bool,
    profile: Path | None,
    sites: list[str] | None = None,
    share: bool = False,
) -> Subject:
    config = workdir / f"{name}.yaml"
    listed = "  share_group: p1evse\n  share_sticky: true\n" if share else ""
    if sites is not None:
        listing = workdir / "sites.txt"
        listing.write_text("\n".join(sites))
        listed += f"  sites_file: {listing}\n"
    config.write_text(CONFIG.format(port=port, membership=str(membership).lower(), sites=listed))
    listen = f"{HOST}:{free_port()}"
    command = [sys.executable, "-m", "p1evse", "run"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "p1evse", "run"]
    env = {
        **os.environ,
        "P1EVSE_CONFIG": str(config),
        "P1EVSE_MQTT__CLIENT_ID": name,
        "P1EVSE_WEB__LISTEN": listen,
    }
    process = subprocess.Popen(command, env=env)
    subject = Subject(process, listen)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://{listen}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return subject
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"p1evse {name} did not come up")
        time.sleep(0.1)


def stop(subject: Subject) -> None:
    subject.process.send_signal(signal.SIGINT)
    try:
        subject.process.wait(20)
    except subprocess.TimeoutExpired:
        subject.process.kill()


# -- one measured row ---------------------------------------------------------------------


@dataclass
class Row:
    label: str
    sites: int
    processes: int
    inbound_per_s: float
    outputs_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_message: float
    cpu_share: float
    rss_mb: float
    loop_stall_ms: str
    lost: int


def longest_stall(before: dict[str, float], after: dict[str, float]) -> str:
    """The longest delay was at most the first bucket bound whose (cumulative) count
    grew as much as the total's."""
    total = after["+Inf"] - before.get("+Inf", 0.0)
    for bound, count in after.items():
        if bound != "+Inf" and count - before.get(bound, 0.0) == total:
            return f"≤ {float(bound) * 1000:g}"
    return "> 1000"


def measure(
    label: str,
    port: int,
    subjects: list[Subject],
    sites: list[str],
    rate_per_site: float,
    duration_s: float,
) -> Row:
    load = Load(sites, rate_per_site)
    sender = RawClient(port, f"bench-load-{time.monotonic_ns()}")
    receiver = RawClient(port, f"bench-out-{time.monotonic_ns()}")
    receiver.subscribe(GRID_IE)
    time.sleep(0.2)  # the SUBACK; the receiver thread reads it
    threading.Thread(target=receive_outputs, args=(receiver, load), daemon=True).start()
    # warm-up, not measured: every site made on its first message, then fed a while,
    # until p1evse has caught up with it
    send_readings(sender, load, max(2.0 / rate_per_site, len(sites) / 5000))
    warm = load.sent
    deadline = time.monotonic() + START_TIMEOUT_S
    while load.received < warm and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    before_cpu = sum(subject.cpu_s() for subject in subjects)
    before_lag = [subject.loop_lag_counts() for subject in subjects]
    received_before = load.received
    load.measuring = True
    started = time.perf_counter()
    send_readings(sender, load, duration_s)
    elapsed = time.perf_counter() - started
    after_cpu = sum(subject.cpu_s() for subject in subjects)
    rss = sum(subject.rss_mb() for subject in subjects)
    stalls = [
        longest_stall(before, subject.loop_lag_counts())
        for before, subject in zip(before_lag, subjects, strict=True)
    ]
    sent = load.sent
    deadline = time.monotonic() + DRAIN_S
    while load.received - received_before < sent and time.monotonic() < deadline:
        time.sleep(0.05)  # the last outputs on their way
    load.measuring = False
    received = load.received - received_before
    sender.close()
    receiver.close()
    latencies = sorted(load.latencies_ns)
    inbound = 2 * sent / elapsed

    def at(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6 if latencies else 0.0
        )

    return Row(
        label,
        len(sites),
        len(subjects),
        inbound,
        received / elapsed,
        at(0.5),
        at(0.99),
        latencies[-1] / 1e6 if latencies else 0.0,
        (after_cpu - before_cpu) / (2 * sent) * 1e6 if sent else 0.0,
        (after_cpu - before_cpu) / elapsed,
        rss,
        ", ".join(stalls),
        max(0, sent - received),
    )


def print_rows(title: str, rows: list[Row], idle_rss_mb: float) -> None:
    print(f"\n### {title}\n")
    print(
        "| run | sites | processes | inbound msgs/s | outputs/s | p50 ms | p99 ms | max ms "
        "| CPU µs/inbound msg | CPU (cores) | RSS MB | RSS MB per 1,000 sites | longest loop "
        "stall ms | lost |"
    )
    print("|" + "---|" * 14)
    for row in rows:
        per_thousand = (row.rss_mb - idle_rss_mb * row.processes) / row.sites * 1000
        print(
            f"| {row.label} | {row.sites:,} | {row.processes} | {row.inbound_per_s:,.0f} "
            f"| {row.outputs_per_s:,.0f} | {row.p50_ms:.1f} | {row.p99_ms:.1f} "
            f"| {row.max_ms:.0f} | {row.cpu_us_per_message:.1f} | {row.cpu_share:.2f} "
            f"| {row.rss_mb:.1f} | {per_thousand:.1f} | {row.loop_stall_ms} | {row.lost:,} |"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--sites", default="1,100,1000,10000")
    parser.add_argument("--duration", type=float, default=15.0, help="s measured per row")
    parser.add_argument("--no-ramp", action="store_true", help="skip the rising rate")
    parser.add_argument("--no-split", action="store_true", help="skip 1 vs 2 vs 4 processes")
    parser.add_argument("--split-sites", type=int, default=4000)
    parser.add_argument("--profile", type=int, help="profile p1evse at this many sites")
    parser.add_argument(
        "--share", action="store_true", help="one process as a shared subscription's member"
    )
    args = parser.parse_args()
    counts = [int(count) for count in args.sites.split(",")]
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        port = stack.enter_context(mosquitto(workdir))
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}", file=sys.stderr)
        rows: list[Row] = []
        idle = start_p1evse(workdir, port, "idle", False, None)
        time.sleep(1.0)
        idle_rss = idle.rss_mb()
        stop(idle)
        for count in counts:
            profile = workdir / "p1evse.prof" if args.profile == count else None
            subject = start_p1evse(
                workdir, port, f"p1evse-{count}", False, profile, share=args.share
            )
            sites = [f"s{n}" for n in range(count)]
            print(f"{count} sites at 1 reading/s ...", file=sys.stderr)
            rows.append(measure("1 reading/s", port, [subject], sites, 1.0, args.duration))
            if count == max(counts) and not args.no_ramp:
                for rate in (2.0, 3.0, 4.0, 6.0):
                    print(f"{count} sites at {rate:g} readings/s ...", file=sys.stderr)
                    row = measure(
                        f"{rate:g} readings/s", port, [subject], sites, rate, args.duration
                    )
                    rows.append(row)
                    if row.p99_ms > 50 or row.lost > row.outputs_per_s:
                        break
            stop(subject)
            if profile is not None:
                show_profile(profile)
        print_rows("one process", rows, idle_rss)
        if not args.no_split:
            split_rows = []
            sites = [f"s{n}" for n in range(args.split_sites)]
            for processes, listed in ((1, False), (2, False), (4, False), (2, True), (4, True)):
                subjects = [
                    start_p1evse(workdir, port, f"m{n}", True, None, sites if listed else None)
                    for n in range(processes)
                ]
                time.sleep(1.0)
                print(
                    f"{processes} processes, {len(sites)} sites at 2 readings/s ...",
                    file=sys.stderr,
                )
                label = "listed sites" if listed else "patterns"
                split_rows.append(measure(label, port, subjects, sites, 2.0, args.duration))
                for subject in subjects:
                    stop(subject)
            print_rows(
                "live members sharing the sites: every process reads every message "
                "(patterns), or its own sites' only (listed sites)",
                split_rows,
                idle_rss,
            )
        print(f"\nidle p1evse (fleet, page on, no site): RSS {idle_rss:.1f} MB")


def show_profile(path: Path) -> None:
    import pstats

    print("\n### profile of p1evse (own time, top 25; then cumulative, top 40)\n\n```")
    stats = pstats.Stats(str(path), stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    print("```", flush=True)


if __name__ == "__main__":
    main()
