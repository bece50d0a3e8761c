"""`p1evse demo` runs with nothing installed but the package, and shows values."""

from __future__ import annotations

import re
import subprocess
import sys

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
