"""Command line: `p1evse run | check | health | simulate | demo`."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import logging
import math
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from p1evse import __version__
from p1evse.config import CONFIG_PATH_VARIABLE, LogSettings, Settings, load
from p1evse.errors import ConfigError
from p1evse.fleet.settings import Shard, parse_shard
from p1evse.options import add_option, validated
from p1evse.web.settings import ListenAddress, WebSettings

EXIT_CONFIG = 2
EXIT_UNHEALTHY = 1
LOG_LEVELS = get_args(LogSettings.model_fields["level"].annotation)
# `health` is Docker's HEALTHCHECK: a short wait, within the image's 10 s limit
HEALTH_TIMEOUT_S = 3.0
MAX_LISTEN_S = 3600.0
HEALTH_ANSWER_BYTES = 1024
# an every-address bind is asked on the loopback of its family
LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1"}


SIMULATE_HELP = "a day of house, PV, car and OpenEVSE's divert, offline"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # simulate's options come from the simulator's models: built only when asked for,
    # so that `run` on a small board loads none of them
    simulating = argv[:1] == ["simulate"]
    args = _parser(simulate=simulating).parse_args(argv)
    if simulating:
        # a simulated day is a report: the service's own log lines (a stale meter, a
        # pause) happen thousands of times in it and are its figures' business, not the
        # terminal's
        _setup_logging("error")
    try:
        code: int = args.command(args)
        sys.stdout.flush()  # a reader that went away shows here, not at exit
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"p1evse: config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        # `p1evse check | head`: whoever read the output stopped; what is left of it
        # goes nowhere, and the exit's own flush must not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


def _parser(simulate: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p1evse",
        description="Feed OpenEVSE's solar divert with grid power from a smart meter's P1 port.",
    )
    parser.add_argument("--version", action="version", version=f"p1evse {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    config_help = "YAML config file (default: $P1EVSE_CONFIG, else built-in defaults)"
    run = commands.add_parser("run", help="run the bridge")
    run.add_argument("-c", "--config", type=Path, help=config_help)
    run.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, help="override log.level")
    run.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="a fleet's process I (from 0) of N: serve the site ids that hash to I "
        "(overrides fleet.shard)",
    )
    run.set_defaults(command=_run)

    check = commands.add_parser("check", help="validate the config and try every endpoint")
    check.add_argument("-c", "--config", type=Path, help=config_help)
    check.add_argument(
        "--listen",
        type=_listen_seconds,
        default=12.0,
        metavar="S",
        help="seconds to watch the source's data (0: don't), default %(default)g",
    )
    check.set_defaults(command=_check)

    health = commands.add_parser(
        "health", help="ask the running service's /healthz (exit 0 healthy, 1 not)"
    )
    health.add_argument("-c", "--config", type=Path, help=config_help)
    health.set_defaults(command=_health)

    if simulate:
        from p1evse.sim.cli import add_parser as add_simulate

        add_simulate(commands, SIMULATE_HELP)
    else:
        commands.add_parser("simulate", help=SIMULATE_HELP)

    demo = commands.add_parser("demo", help="everything on this machine: broker, meter, bridge")
    demo.add_argument("--port", type=_port, default=0, help="broker port (default: a free one)")
    demo.add_argument("--duration", type=_positive, help="stop after S seconds")
    demo.add_argument(
        "--speed",
        type=_positive,
        default=60.0,
        help="simulated seconds per real second of the sunny day (default %(default)g)",
    )
    add_option(
        demo,
        "--listen",
        WebSettings,
        "listen",
        help="status page address; empty: no page",
        metavar="HOST:PORT",
    )
    demo.add_argument(
        "--meter",
        choices=["split", "p1"],
        default="split",
        help="the meter as DSMR-reader's MQTT topics (default) or P1 telegrams over TCP",
    )
    demo.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default="warning")
    demo.set_defaults(command=_demo)
    return parser


def _settings(
    args: argparse.Namespace, options: dict[str, Any] | None = None
) -> tuple[Settings, Path | None]:
    path = args.config
    if path is None and os.environ.get(CONFIG_PATH_VARIABLE):
        path = Path(os.environ[CONFIG_PATH_VARIABLE])
    return load(path, options), path


def _shard(text: str) -> Shard:
    """`--shard`: checked here, so that what is wrong with it is never blamed on the
    config file; and an empty one is no shard at all, which is an error here."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected I/N (this process is shard I of N), got ''")
    try:
        shard = parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert isinstance(shard, Shard)
    return shard


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(args: argparse.Namespace) -> int:
    from p1evse.app import service

    options = {"fleet": {"shard": args.shard}} if args.shard is not None else None
    settings, _ = _settings(args, options)
    _setup_logging(args.log_level or settings.log.level)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = _stop_on_signals(loop)
        await service(settings, loop).run(stop)

    asyncio.run(serve())
    return 0


def _check(args: argparse.Namespace) -> int:
    from p1evse.check import check

    settings, path = _settings(args)
    _setup_logging("error")
    return asyncio.run(check(settings, path, listen_s=args.listen, out=sys.stdout))


def _port(text: str) -> int:
    """A TCP port for the command line, 0 for a free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return port


def _listen_seconds(text: str) -> float:
    """`check --listen`: 0 (don't) up to an hour."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_LISTEN_S:
        raise argparse.ArgumentTypeError(
            f"expected seconds from 0 to {MAX_LISTEN_S:g}, got {text!r}"
        )
    return value


def _positive(text: str) -> float:
    """A number of seconds (or a speed) for the command line: finite and above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def healthz_url(address: ListenAddress) -> str:
    """Where the status server listening on `address` answers /healthz on this machine."""
    local = address._replace(host=LOOPBACK_FOR.get(address.host, address.host))
    return f"http://{local.authority}/healthz"


def _health(args: argparse.Namespace) -> int:
    """The config as `run` loads it, then one GET of /healthz (standard library only:
    it runs every 30 s beside the service)."""
    settings, _ = _settings(args)
    address = settings.web.address
    if address is None:
        print(
            "p1evse: health: the status server is off (web.listen is empty): "
            "there is no /healthz to ask",
            file=sys.stderr,
        )
        return EXIT_UNHEALTHY
    url = healthz_url(address)
    try:
        status, answer = _get(url)
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"p1evse: health: cannot reach {url}: {reason}", file=sys.stderr)
        return EXIT_UNHEALTHY
    line = answer.decode("utf-8", "replace").partition("\n")[0].strip()
    print(line or f"HTTP {status}")
    return 0 if status == 200 else EXIT_UNHEALTHY


def _get(url: str) -> tuple[int, bytes]:
    """The status and the start of the answer, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=HEALTH_TIMEOUT_S) as response:
            return int(response.status), bytes(response.read(HEALTH_ANSWER_BYTES))
    except urllib.error.HTTPError as exc:  # 503: unhealthy, with the reason
        with exc:
            return exc.code, exc.read(HEALTH_ANSWER_BYTES)


def _demo(args: argparse.Namespace) -> int:
    try:
        from p1evse.sim.broker import PortInUse
        from p1evse.sim.demo import demo
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "amqtt":
            raise
        # exit 2 as for a bad config: trying again without installing it cannot help
        print(
            "p1evse: demo needs its MQTT broker, amqtt, which is not installed: "
            "pip install 'p1evse[demo]'",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    page = validated(WebSettings, {"listen": args.listen}, {"listen": "--listen"})
    _setup_logging(args.log_level)

    async def main() -> None:
        stop = _stop_on_signals(asyncio.get_running_loop())
        await demo(
            port=args.port,
            duration=args.duration,
            speed=args.speed,
            stop=stop,
            listen=page.listen,
            meter=args.meter,
        )

    try:
        asyncio.run(main())
    except PortInUse as exc:
        print(f"p1evse: demo: its MQTT broker cannot listen on {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _stop_on_signals(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
