"""`p1evse health`, the image's HEALTHCHECK, run as Docker runs it: a separate process
that loads the config as `run` does and asks the running service's /healthz."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from pathlib import Path

import pytest

from p1evse.sim.broker import free_port
from tests.brokers import BrokerProcess
from tests.payloads import DELIVERED
from tests.test_web import serving, web_settings

# a Python process that imports p1evse's config: about a second here, ten times that and
# more on a slow machine
COMMAND_TIMEOUT_S = 60.0


async def health(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`p1evse health` in its own process: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p1evse",
        "health",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def config_file(tmp_path: Path, listen: str) -> Path:
    path = tmp_path / f"p1evse-{listen.rpartition(':')[2]}.yaml"
    path.write_text(f"web:\n  listen: {listen!r}\n")
    return path


async def test_health_follows_the_running_service(
    one_broker: BrokerProcess, tmp_path: Path
) -> None:
    settings = web_settings(one_broker, publish={"pair_window": 0.1})
    assert settings.web.address is not None
    port = settings.web.address.port
    async with serving(settings) as site:
        # the port from the file (the image's /config/p1evse.yaml), the every-address
        # bind asked on loopback
        config = config_file(tmp_path, f"0.0.0.0:{port}")
        code, out, err = await health("-c", str(config))
        assert (code, err) == (1, "")
        assert out.startswith("unhealthy: no reading since start-up")
        assert out.count("\n") == 1

        await site.send(DELIVERED, "0.500", "500")
        code, out, err = await health("-c", str(config))
        assert (code, err) == (0, "")
        assert re.fullmatch(r"ok: broker connected, last reading \d+\.\d s ago\n", out)

        # the environment overrides the file, as it does for `run`
        elsewhere = config_file(tmp_path, f"127.0.0.1:{free_port()}")
        listen = {"P1EVSE_WEB__LISTEN": f"0.0.0.0:{port}"}
        assert (await health("-c", str(elsewhere), env=listen))[0] == 0
        assert (await health(env={"P1EVSE_CONFIG": str(config)}))[0] == 0


async def test_health_asks_an_ipv6_service_on_its_loopback(
    one_broker: BrokerProcess, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET6) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError:
            pytest.skip("this machine has no IPv6 loopback")
        port = sock.getsockname()[1]
    settings = web_settings(one_broker, web={"listen": f"[::1]:{port}"})
    async with serving(settings):
        code, out, err = await health(env={"P1EVSE_WEB__LISTEN": f"[::]:{port}"})
    assert (code, err) == (1, "")
    assert out.startswith("unhealthy: ")


async def test_health_with_nothing_listening_is_unhealthy() -> None:
    port = free_port()
    code, out, err = await health(env={"P1EVSE_WEB__LISTEN": f"0.0.0.0:{port}"})
    assert (code, out) == (1, "")
    assert err.startswith(f"p1evse: health: cannot reach http://127.0.0.1:{port}/healthz: ")
    assert "refused" in err
    assert err.count("\n") == 1


async def test_health_gives_up_on_a_server_that_does_not_answer() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        code, out, err = await health(env={"P1EVSE_WEB__LISTEN": f"127.0.0.1:{port}"})
    assert (code, out) == (1, "")
    assert err.startswith(f"p1evse: health: cannot reach http://127.0.0.1:{port}/healthz: ")
    assert "timed out" in err


async def test_health_with_the_status_server_off_says_so() -> None:
    code, out, err = await health(env={"P1EVSE_WEB__LISTEN": ""})
    assert (code, out) == (1, "")
    assert err == (
        "p1evse: health: the status server is off (web.listen is empty): "
        "there is no /healthz to ask\n"
    )


async def test_health_with_a_bad_config_exits_2() -> None:
    code, out, err = await health(env={"P1EVSE_WEB__LISTEN": "nonsense"})
    assert (code, out) == (2, "")
    assert err.startswith("p1evse: config error: web.listen = 'nonsense'")
