"""`p1evse demo` runs with nothing installed but the package, and shows values."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from p1evse.sim.broker import free_port


@pytest.mark.parametrize("meter", ["split", "p1"])
def test_demo_runs_the_bridge_on_an_embedded_broker(meter: str) -> None:
    """The meter as DSMR-reader's topics, or as P1 telegrams through a TCP gateway."""
    listen = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "p1evse", "demo", "--duration", "3", "--speed", "600", "--listen", listen),
            *("--meter", meter),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "->  p1evse/grid_ie" in line]
    assert lines, result.stdout
    # each line: wall clock, simulated clock, the meter's value and what the bridge published
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d  sim \d\d:\d\d  meter +[+-]\d+ W  ->  p1evse/grid_ie +-?\d+"
        r"  ->  car +\d+\.\d A",
        lines[0],
    )
    assert f"status page: http://{listen}/" in result.stdout
    assert "Traceback" not in result.stderr
    source = "p1 tcp://127.0.0.1:" if meter == "p1" else "mqtt_split dsmr/reading/"
    assert source in result.stdout


DEFAULT_PAGE = ("127.0.0.1", 8080)


async def test_demo_with_port_8080_taken_serves_its_page_on_a_free_port() -> None:
    """The URL it prints is one that answers."""
    with contextlib.ExitStack() as stack:
        taken = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # taken by something else already: busy too
            taken.bind(DEFAULT_PAGE)
            taken.listen()
        demo = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "p1evse", "demo", "--duration", "60", "--speed", "600"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert demo.stdout is not None
            line = await asyncio.wait_for(status_page_line(demo.stdout), 30)
            url = line.split()[2]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
            assert not url.endswith(":8080/")
            assert line.endswith("(127.0.0.1:8080 is in use)")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.get(url) as response:
                    assert response.status == 200
                    assert "<title>" in await response.text()
                async with http.get(url + "api/state") as response:
                    # the page shows the simulated day's time
                    assert re.fullmatch(r"\d\d:\d\d", (await response.json())["sim_clock"])
        finally:
            if demo.returncode is None:
                demo.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(demo.communicate(), 10)
    assert demo.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr


async def status_page_line(stdout: asyncio.StreamReader) -> str:
    """The demo's `status page: URL` line."""
    while line := (await stdout.readline()).decode():
        if line.strip().startswith("status page:"):
            return line.strip()
    raise EOFError("the demo ended without a status page")
