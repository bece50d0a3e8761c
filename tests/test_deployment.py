"""What the Docker image, compose.yaml and the systemd unit rely on, checked where Docker and
systemd cannot run: the install script the image uses and the pinned requirements it
installs, the mosquitto config compose.yaml mounts, the health check, and the unit file."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from p1evse import __version__
from tests.brokers import BrokerProcess, mosquitto_available
from tests.conftest import require
from tests.probe import Probe

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "deploy" / "install.sh"
REQUIREMENTS = REPO / "deploy" / "requirements.txt"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# the install takes about a minute on a busy 2-core machine: ten times that, and more
INSTALL_TIMEOUT_S = 900


@dataclass(frozen=True)
class Pin:
    line: str  # the requirement and its hashes, continuation lines joined
    requirement: Requirement
    hashes: list[str]

    @property
    def version(self) -> str:
        return next(iter(self.requirement.specifier)).version


def pins() -> dict[str, Pin]:
    """deploy/requirements.txt by canonical name."""
    found = {}
    for line in REQUIREMENTS.read_text().replace("\\\n", " ").splitlines():
        line = " ".join(line.split())
        if line and not line.startswith("#"):
            requirement, *hashes = line.split(" --hash=")
            pin = Pin(line, Requirement(requirement), hashes)
            found[canonicalize_name(pin.requirement.name)] = pin
    return found


def runtime_dependencies() -> list[Requirement]:
    return [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]


def installed_closure(roots: Iterable[Requirement]) -> set[str]:
    """The distributions `roots` pull in, by canonical name, as installed here."""
    names: set[str] = set()
    todo = list(roots)
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in done:
            continue
        done.add(key)
        names.add(key[0])
        for text in metadata.requires(requirement.name) or []:
            child = Requirement(text)
            extras = {"", *requirement.extras}
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                todo.append(child)
    return names


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_install_script_gives_a_working_p1evse_command(tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    bin_dir = environment / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # from another directory and without an argument: the script finds its own tree
    install = subprocess.run(
        ["sh", str(INSTALL)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    inspect = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "inspect"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    installed = {
        canonicalize_name(item["metadata"]["name"]): item
        for item in json.loads(inspect.stdout)["installed"]
    }
    # p1evse from this tree, never from the package index
    assert installed["p1evse"]["direct_url"]["url"] == REPO.as_uri()
    # the pinned versions, and nothing else (no demo broker, nothing from the tests)
    wanted = {
        name: pin.version
        for name, pin in pins().items()
        if pin.requirement.marker is None or pin.requirement.marker.evaluate()
    }
    got = {
        name: item["metadata"]["version"]
        for name, item in installed.items()
        if name not in {"p1evse", "pip", "setuptools"}
    }
    assert got == wanted

    p1evse = str(bin_dir / "p1evse")
    version = subprocess.run([p1evse, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"p1evse {__version__}"
    # the installed package carries everything `run` needs, and the example is valid
    check = subprocess.run(
        [p1evse, "check", "--listen", "0", "-c", str(REPO / "examples" / "p1evse.yaml")],
        capture_output=True,
        text=True,
        env={**env, "P1EVSE_MQTT__PORT": "1"},
        timeout=120,
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert "FAILED" in check.stdout
    # the demo's broker is an extra: asked for without it, the demo says what to install
    demo = subprocess.run([p1evse, "demo"], capture_output=True, text=True, env=env, timeout=120)
    assert (demo.returncode, demo.stdout) == (2, "")
    assert demo.stderr.count("\n") == 1
    assert "pip install 'p1evse[demo]'" in demo.stderr


def run_install(
    tmp_path: Path, *args: str, cwd: Path
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """install.sh with a `python` that records its arguments instead of installing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" >> {calls}\necho >> {calls}\n')
    python.chmod(0o755)
    result = subprocess.run(
        ["sh", str(INSTALL), *args],
        cwd=cwd,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    recorded = calls.read_text().splitlines() if calls.exists() else []
    return result, [line.rstrip("\0").split("\0") for line in recorded]


@pytest.mark.parametrize(
    ("args", "cwd"),
    [
        ((), "elsewhere"),  # docs/deployment.md, or from any directory: the script's own tree
        ((".",), "repo"),
        (("p1evse",), "parent"),  # a bare name is the folder of that name, never a package
    ],
    ids=["no-argument", "dot-in-the-tree", "bare-name"],
)
def test_install_script_installs_the_tree_by_its_path(
    tmp_path: Path, args: tuple[str, ...], cwd: str
) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "p1evse").symlink_to(REPO)
    directory = {"elsewhere": tmp_path, "repo": REPO, "parent": parent}[cwd]
    result, calls = run_install(tmp_path, *args, cwd=directory)
    assert result.returncode == 0, result.stderr
    pip = [call for call in calls if call[:3] == ["-m", "pip", "install"]]
    assert len(pip) == 2
    assert pip[0][-3:] == ["--require-hashes", "-r", f"{REPO}/deploy/requirements.txt"]
    assert pip[1][-2:] == ["--no-deps", str(REPO)]


@pytest.mark.parametrize("argument", ["not-a-folder", "tmp", "p1evse"])
def test_install_script_refuses_what_is_not_a_p1evse_source_tree(
    tmp_path: Path, argument: str
) -> None:
    (tmp_path / "p1evse").mkdir()  # a folder of that name, but no source tree
    target = str(tmp_path) if argument == "tmp" else argument
    result, calls = run_install(tmp_path, target, cwd=tmp_path)
    assert result.returncode == 2
    assert calls == []  # neither pip nor the package index was asked for anything
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("install.sh: ")
    assert "not a p1evse source tree" in result.stderr or "no such directory" in result.stderr


def test_requirements_pin_every_version_with_hashes() -> None:
    pinned = pins()
    assert pinned
    for pin in pinned.values():
        assert [spec.operator for spec in pin.requirement.specifier] == ["=="], pin.line
        assert "*" not in pin.version, pin.line
        assert pin.hashes, f"no --hash for {pin.requirement.name}"
        for digest in pin.hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), pin.line


def test_requirements_name_no_address() -> None:
    text = REQUIREMENTS.read_text()
    assert "://" not in text
    # --index-url, --extra-index-url, -i, --find-links, ...: only --hash may appear
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    options = set(re.findall(r"(?:^|\s)(-{1,2}[a-z][a-z-]*)", "\n".join(lines)))
    assert options == {"--hash"}


def test_requirements_pin_each_runtime_dependency_within_its_range() -> None:
    pinned = pins()
    for dependency in runtime_dependencies():
        pin = pinned.get(canonicalize_name(dependency.name))
        assert pin is not None, (
            f"{dependency.name} is not in deploy/requirements.txt: export it again "
            "(README.md, Development)"
        )
        assert dependency.specifier.contains(pin.version, prereleases=True), (
            f"deploy/requirements.txt pins {pin.requirement}, outside pyproject.toml's "
            f"{dependency}: export it again (README.md, Development)"
        )


def test_requirements_hold_nothing_only_the_demo_or_the_tests_need() -> None:
    development = [Requirement(text) for text in PYPROJECT["dependency-groups"]["dev"]]
    demo = [Requirement(text) for text in PYPROJECT["project"]["optional-dependencies"]["demo"]]
    listed = {canonicalize_name(r.name) for r in development + demo} - {"p1evse"}
    only_development = listed - installed_closure(runtime_dependencies())
    assert {"pytest", "amqtt"} <= only_development
    assert not only_development & set(pins())
    assert "amqtt" not in {canonicalize_name(r.name) for r in runtime_dependencies()}


def test_dockerfile_installs_with_the_tested_script() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "deploy/install.sh" in dockerfile
    assert "deploy/requirements.txt" in dockerfile
    assert "\nUSER p1evse\n" in dockerfile


def healthcheck(text: str) -> str:
    """The HEALTHCHECK instruction in `text`, with its continuation lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HEALTHCHECK"))
    end = start
    while lines[end].endswith("\\"):
        end += 1
    return "\n".join(lines[start : end + 1])


def test_the_readmes_healthcheck_is_the_dockerfiles() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```dockerfile\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    shown = [block for block in blocks if "HEALTHCHECK" in block]
    assert len(shown) == 1
    instruction = healthcheck((REPO / "Dockerfile").read_text())
    assert healthcheck(shown[0]) == instruction
    assert "p1evse health" in instruction


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return loaded


def test_compose_publishes_the_page_on_loopback_only() -> None:
    p1evse = compose()["services"]["p1evse"]
    # inside its container p1evse listens on every address, so that Docker can forward
    assert p1evse["environment"]["P1EVSE_WEB__LISTEN"] == "0.0.0.0:8080"
    assert p1evse["ports"] == ["127.0.0.1:8080:8080"]


def test_compose_with_every_commented_setting_uncommented_keeps_its_environment() -> None:
    """Uncommenting the P1 cable's block gave a second `environment:` key, which
    replaced the first (the broker's host lost) or made compose refuse the file."""
    text = (REPO / "compose.yaml").read_text()
    uncommented = re.sub(
        r"^(\s*)# ((?:[A-Z0-9_]+: |devices:|  - /dev/).*)$", r"\1\2", text, flags=re.M
    )
    assert uncommented != text
    p1evse = yaml.safe_load(uncommented)["services"]["p1evse"]
    environment = p1evse["environment"]
    assert environment["P1EVSE_MQTT__HOST"] == "mosquitto"
    assert environment["P1EVSE_SOURCE__TYPE"] == "p1"
    assert p1evse["devices"] == ["/dev/ttyUSB0:/dev/ttyUSB0"]


def test_compose_mounts_the_shipped_mosquitto_config() -> None:
    volumes = compose()["services"]["mosquitto"]["volumes"]
    sources = [volume.split(":")[0] for volume in volumes if ":/mosquitto/config" in volume]
    assert sources == ["./mosquitto/config"]
    assert (REPO / sources[0] / "mosquitto.conf").is_file()


async def test_the_shipped_mosquitto_config_starts_a_real_mosquitto(tmp_path: Path) -> None:
    require("mosquitto", mosquitto_available())
    shipped = (REPO / "mosquitto" / "config" / "mosquitto.conf").read_text()
    data = tmp_path / "data"
    data.mkdir()

    def config(port: int) -> str:
        """Only the port and the data folder differ from what the container reads (and,
        for a test run as root, the user mosquitto switches to)."""
        text = shipped.replace("listener 1883\n", f"listener {port} 127.0.0.1\n")
        text = text.replace(
            "persistence_location /mosquitto/data/", f"persistence_location {data}/"
        )
        assert text.count(str(port)) == 1
        assert text.count(str(data)) == 1
        return text + f"user {getpass.getuser()}\n"

    broker = BrokerProcess("mosquitto", tmp_path, config=config)
    broker.start()
    try:
        async with Probe(broker.port) as probe:
            await probe.subscribe("p1evse/grid_ie")
            probe.publish("p1evse/grid_ie", "-1234")
            assert await probe.next_payload("p1evse/grid_ie") == "-1234"
    finally:
        broker.stop()
    assert not [line for line in broker.log if "Error" in line]
    assert (data / "mosquitto.db").is_file()  # persistence writes where the volume is


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
