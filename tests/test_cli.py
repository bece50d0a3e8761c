"""The command line as a user runs it: real processes, real signals, a real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from p1evse import __version__
from p1evse.sim.broker import free_port
from p1evse.web.settings import WebSettings
from tests.brokers import BrokerProcess
from tests.imports import loaded_after
from tests.probe import EVENT_TIMEOUT_S, Probe

CLAIM = "openevse/claim/set"
STATUS = "p1evse/status"


def p1evse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p1evse", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@asynccontextmanager
async def service(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`p1evse run` with these variables, its log on a pipe; killed if left running."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "p1evse", "run"),
        env={**os.environ, **env},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_version() -> None:
    result = p1evse("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"p1evse {__version__}"


def test_a_reader_that_stops_reading_gets_no_traceback() -> None:
    """`p1evse check | head`: the pipe closed before check said everything."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        result = subprocess.run(
            [sys.executable, "-m", "p1evse", "check", "--listen", "0"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            env={**os.environ, "P1EVSE_MQTT__PORT": str(free_port())},  # nobody there
        )
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr
    assert result.returncode == 1


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "p1evse.yaml"
    config.write_text("mqtt:\n  port: abc\npublish:\n  on_stale: maybe\n")
    result = p1evse("run", "-c", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "p1evse: config error: mqtt.port = 'abc': Input should be a valid integer, unable to "
        f"parse string as an integer ({config} line 2)",
        "p1evse: config error: publish.on_stale = 'maybe': Input should be 'pause', 'import' or "
        f"'none' ({config} line 4)",
    ]


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "p1evse.yaml"
    config.write_text("openevse:\n  grid_ie_topic: openevse/grid_ie\n")
    result = p1evse("check", env={"P1EVSE_CONFIG": str(config)})
    assert result.returncode == 2
    assert "under OpenEVSE's base topic" in result.stderr


def test_demo_with_a_bad_listen_address_exits_2() -> None:
    result = p1evse("demo", "--listen", "nonsense")
    assert result.returncode == 2
    assert result.stderr == (
        "p1evse: config error: --listen 'nonsense': expected host:port such as "
        "127.0.0.1:8080, got 'nonsense'\n"
    )


def test_demo_help_states_the_status_pages_default_from_its_settings() -> None:
    result = p1evse("demo", "--help")
    assert result.returncode == 0
    assert f"(default {WebSettings().listen})" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("option", "value"),
    [("--speed", "nan"), ("--speed", "0"), ("--speed", "-5"), ("--duration", "inf")],
)
def test_demo_refuses_a_speed_or_duration_that_is_no_positive_number(
    option: str, value: str
) -> None:
    result = p1evse("demo", option, value)
    assert result.returncode == 2
    assert result.stderr.endswith(
        f"error: argument {option}: expected a number above 0, got '{value}'\n"
    )


def test_demo_on_a_port_in_use_or_out_of_range_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = p1evse("demo", "--port", str(port), "--duration", "1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"p1evse: demo: its MQTT broker cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    result = p1evse("demo", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr.endswith("expected a port from 0 to 65535, got '70000'\n")


def test_demo_without_its_broker_says_what_to_install() -> None:
    """The runtime install has no amqtt (the `demo` extra); an import of it fails then."""
    without_amqtt = (
        "import sys; sys.modules['amqtt'] = None; "
        "from p1evse.cli import main; sys.exit(main(['demo', '--duration', '1']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", without_amqtt], capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "p1evse: demo needs its MQTT broker, amqtt, which is not installed: "
        "pip install 'p1evse[demo]'\n"
    )


async def test_a_status_page_port_in_use_does_not_stop_the_service(
    one_broker: BrokerProcess,
) -> None:
    """Not a config error (exit 2 would keep systemd from restarting it): the bridge runs,
    and says why the page is missing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {"P1EVSE_MQTT__PORT": str(one_broker.port), "P1EVSE_WEB__LISTEN": listen}
        async with Probe(one_broker.port) as probe, service(env) as process:
            await probe.subscribe(STATUS)
            await probe.wait_for_payload(STATUS, "online")
            assert process.stderr is not None
            async with asyncio.timeout(10):
                while b"unavailable" not in (line := await process.stderr.readline()):
                    assert line, "p1evse ended"
            assert process.returncode is None
            process.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(process.communicate(), 5)
    assert process.returncode == 0
    assert f"status page and /healthz unavailable: web.listen {listen}: " in line.decode()
    assert b"Traceback" not in rest


def test_bad_environment_value_exits_2() -> None:
    result = p1evse("run", env={"P1EVSE_PUBLISH__INTERVAL": "often"})
    assert result.returncode == 2
    assert "publish.interval = 'often'" in result.stderr
    assert "P1EVSE_PUBLISH__INTERVAL" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_keeps_a_silent_meters_pause_says_offline_and_exits_0_within_2_s(
    broker: BrokerProcess, sig: signal.Signals
) -> None:
    """Released, the charger would charge on at its last rate with no one feeding it:
    the pause stays for the next run to release (test_deadman.py)."""
    env = {
        "P1EVSE_MQTT__PORT": str(broker.port),
        "P1EVSE_PUBLISH__STALE_AFTER": "0.6",
        "P1EVSE_PUBLISH__PAIR_WINDOW": "0.1",
        "P1EVSE_WEB__LISTEN": "",
    }
    async with Probe(broker.port) as probe:
        await probe.subscribe(CLAIM, STATUS)
        async with service(env) as process:
            await probe.wait_for_payload(STATUS, "online")
            assert await probe.next_payload(CLAIM) == '{"state":"disabled"}'
            loop = asyncio.get_running_loop()
            signalled = loop.time()
            process.send_signal(sig)
            _, stderr = await asyncio.wait_for(process.communicate(), EVENT_TIMEOUT_S)
            took = loop.time() - signalled
        assert process.returncode == 0, stderr.decode()
        assert took < 2.0
        assert await probe.next_payload(STATUS) == "offline"
        probe.publish(CLAIM, "marker")  # after anything the process sent
        assert await probe.next_payload(CLAIM) == "marker"
        assert b"the charger stays paused" in stderr
        assert b"Traceback" not in stderr


async def test_a_killed_process_is_reported_offline_by_its_last_will(
    broker: BrokerProcess,
) -> None:
    env = {**os.environ, "P1EVSE_MQTT__PORT": str(broker.port), "P1EVSE_WEB__LISTEN": ""}
    async with Probe(broker.port) as probe:
        await probe.subscribe(STATUS)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "p1evse", "run", env=env, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await probe.wait_for_payload(STATUS, "online")
        finally:
            process.kill()
            await process.wait()
        message = await probe.next(STATUS)
        assert message.payload == b"offline"


def test_run_loads_none_of_the_simulators_models() -> None:
    """`p1evse run` on a small board: the simulator's options are built only for
    `simulate`, and its models are never imported."""
    code = (
        "from p1evse import cli\n"
        "try:\n"
        "    cli.main(['run', '--help'])\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert loaded_after(code, "p1evse.sim") == []


@pytest.mark.parametrize("seconds", ["-1", "nan", "inf", "3601"])
def test_check_listens_for_a_time_it_can_keep(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """-1 and nan were taken as 0 ("not watched"), inf never returned."""
    from p1evse.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["check", "--listen", seconds])
    assert ended.value.code == 2
    expected = f"argument --listen: expected seconds from 0 to 3600, got '{seconds}'"
    assert expected in capsys.readouterr().err


def test_a_log_level_is_taken_in_any_case_on_the_command_line_as_in_the_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from p1evse.cli import main

    with pytest.raises(SystemExit) as ended:
        main(["run", "--log-level", "DEBUG", "--help"])
    assert ended.value.code == 0
