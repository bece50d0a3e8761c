"""What the Docker image and the systemd unit rely on, checked where Docker and systemd
cannot run: the install script the image uses, and the unit file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from p1evse import __version__
from tests.conftest import require

REPO = Path(__file__).resolve().parent.parent


def test_install_script_gives_a_working_p1evse_command(tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    bin_dir = environment / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        ["sh", str(REPO / "deploy" / "install.sh"), str(REPO)],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    version = subprocess.run(
        [str(bin_dir / "p1evse"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"p1evse {__version__}"
    # the installed package carries everything `run` needs, and the example is valid
    check = subprocess.run(
        [
            str(bin_dir / "p1evse"),
            "check",
            "--listen",
            "0",
            "-c",
            str(REPO / "examples" / "p1evse.yaml"),
        ],
        capture_output=True,
        text=True,
        env={**env, "P1EVSE_MQTT__PORT": "1"},
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert "FAILED" in check.stdout


def test_dockerfile_installs_with_the_tested_script() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "deploy/install.sh" in dockerfile
    assert "\nUSER p1evse\n" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "/healthz" in dockerfile


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    require("systemd-analyze (Debian package systemd)", shutil.which("systemd-analyze") is not None)
    executable = tmp_path / "p1evse"
    executable.write_text(f"#!{sys.executable}\n")
    executable.chmod(0o755)
    unit = (REPO / "deploy" / "p1evse.service").read_text()
    assert "ExecStart=/opt/p1evse/bin/p1evse run" in unit
    copy = tmp_path / "p1evse.service"
    copy.write_text(unit.replace("/opt/p1evse/bin/p1evse", str(executable)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
