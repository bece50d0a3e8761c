"""`p1evse demo` runs with nothing installed but the package, and shows values."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_the_bridge_on_an_embedded_broker() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p1evse", "demo", "--duration", "3", "--speed", "600"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "->  p1evse/grid_ie" in line]
    assert lines, result.stdout
    # each line: wall clock, simulated clock, the meter's value and what the bridge published
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d  sim \d\d:\d\d  meter +[+-]\d+ W  ->  p1evse/grid_ie +-?\d+", lines[0]
    )
    assert "Traceback" not in result.stderr
