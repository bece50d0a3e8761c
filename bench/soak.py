"""Soak benchmark: `p1evse run` relaying 100 readings/s for 10 minutes.

Reports, minute by minute: readings sent and outputs received (nothing may be lost),
p50/p99/max latency, CPU per reading, and the process's resident memory (VmRSS) and peak
(VmHWM). The summary gives the RSS growth from the end of the first (warm-up) minute to
the end of the last, in %, and the p99 of the first minute against the last.

It reuses bench/relay.py's broker, load generator and receiver (same machine notes:
2 cores shared by broker, load generator and subject).

    uv run python bench/soak.py               # 10 minutes
    uv run python bench/soak.py --minutes 1   # a short look
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from relay import (
    Bench,
    BenchError,
    LoadGen,
    Mosquitto,
    Receiver,
    Row,
    Sender,
    SubjectProcess,
    Tracker,
    compile_bytecode,
    interrupt_on_termination,
    measure_rate,
    progress,
    subject_specs,
    wait_ready,
)

RATE = 100


def rss_mb(subject: SubjectProcess) -> float:
    for line in Path(f"/proc/{subject.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS")


def soak(minutes: int, minute_s: float) -> list[tuple[Row, float]]:
    compile_bytecode()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        broker = stack.enter_context(Mosquitto(workdir))
        tracker = Tracker()
        receiver = stack.enter_context(Receiver(broker.port, tracker))
        sender = stack.enter_context(Sender(broker.port))
        bench = Bench(broker.port, workdir, receiver, tracker, LoadGen(sender, tracker))
        spec = subject_specs(broker.port)["p1evse"]
        with SubjectProcess(spec, workdir) as subject:
            wait_ready(subject, bench)
            minutes_measured = []
            for minute in range(1, minutes + 1):
                row = measure_rate(subject, bench, RATE, minute_s)
                minutes_measured.append((row, rss_mb(subject)))
                progress(f"minute {minute}: {row.received}/{row.sent}, p99 {row.p99_ms:.3f} ms")
            return minutes_measured


def report(minutes: Sequence[tuple[Row, float]], minute_s: float) -> str:
    lines = [
        f"soak: p1evse run, relay mode, {RATE} readings/s, {len(minutes)} x {minute_s:g} s",
        "",
        "| minute | sent | received | lost | p50 ms | p99 ms | max ms | CPU µs/reading "
        "| RSS MB | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, (row, rss) in enumerate(minutes, 1):
        lines.append(
            f"| {number} | {row.sent} | {row.received} | {row.lost} | {row.p50_ms:.3f} "
            f"| {row.p99_ms:.3f} | {row.max_ms:.1f} | {row.cpu_us:.1f} | {rss:.1f} "
            f"| {row.rss_mb:.1f} |"
        )
    first, first_rss = minutes[0]
    last, last_rss = minutes[-1]
    lost = sum(row.lost for row, _ in minutes)
    growth = (last_rss - first_rss) / first_rss * 100
    lines += [
        "",
        f"lost in total: {lost} of {sum(row.sent for row, _ in minutes)}",
        f"RSS after the first minute {first_rss:.1f} MB, at the end {last_rss:.1f} MB: "
        f"{growth:+.1f} %",
        f"p99 first minute {first.p99_ms:.3f} ms, last minute {last.p99_ms:.3f} ms",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--minute", type=float, default=60.0, help="seconds per 'minute'")
    args = parser.parse_args(argv)
    try:
        with interrupt_on_termination():
            print(report(soak(args.minutes, args.minute), args.minute))
    except KeyboardInterrupt:
        progress("interrupted; every subprocess has been stopped")
        return 130
    except BenchError as exc:
        progress(f"soak: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
