"""Which pinned runtime requirement has a wheel for which Linux machine, on Python 3.12.

    uv run --with pip python bench/wheels.py [deploy/requirements.txt]

For each machine it runs `pip download --only-binary=:all: --platform ...` once over the
whole file, for glibc 2.17 to 2.36 (Debian 12: python:3.12-slim is Debian 12 or newer);
a requirement pip finds no wheel for is noted and left out of the next try. Prints a
Markdown table: "pure" for a wheel of pure Python, "glibc 2.17" for a compiled wheel and
the oldest C library it runs on, "no wheel" where pip has to build it from its sdist.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

MACHINES = {"x86_64": "x86_64", "aarch64": "aarch64", "armv7": "armv7l"}
GLIBC_MINORS = range(17, 37)
NOT_FOUND = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")
MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def wheel_kind(platforms: set[str]) -> str:
    """'pure', or the oldest glibc one of the wheel's platform tags runs on."""
    if platforms == {"any"}:
        return "pure"
    glibcs = []
    for tag in platforms:
        modern = MANYLINUX.match(tag)
        if modern:
            glibcs.append((int(modern.group(1)), int(modern.group(2))))
        elif tag.partition("_")[0] in LEGACY_MANYLINUX:
            glibcs.append(LEGACY_MANYLINUX[tag.partition("_")[0]])
    major, minor = min(glibcs)
    return f"glibc {major}.{minor}"


def requirements(text: str) -> dict[str, str]:
    """Each requirement's canonical name and its block of lines (requirement and hashes)."""
    blocks: dict[str, str] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            blocks[canonicalize_name(Requirement(line.split(" --hash")[0]).name)] = line
    return blocks


def wheels_for(arch: str, blocks: dict[str, str]) -> dict[str, str]:
    """name -> the platform tag of the wheel pip picks for `arch`, or 'sdist only'."""
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]
    platforms.append(f"manylinux2014_{arch}")
    found: dict[str, str] = {}
    left = dict(blocks)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        while True:
            file = directory / "requirements.txt"
            file.write_text("\n".join(left.values()) + "\n")
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
                + ["--only-binary=:all:", "--python-version", "3.12"]
                + ["--implementation", "cp", "--abi", "cp312", "-d", str(directory / "w")]
                + [arg for platform in platforms for arg in ("--platform", platform)]
                + ["-r", str(file)],
                capture_output=True,
                text=True,
            )
            missing = NOT_FOUND.search(result.stderr)
            if result.returncode == 0:
                break
            if missing is None:
                sys.exit(result.stderr)
            name = canonicalize_name(missing.group(1).split("==")[0])
            found[name] = "no wheel"
            del left[name]
        for wheel in (directory / "w").glob("*.whl"):
            name, _, _, tags = parse_wheel_filename(wheel.name)
            found[name] = wheel_kind({tag.platform for tag in tags})
    return found


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/requirements.txt")
    blocks = requirements(path.read_text())
    columns = {machine: wheels_for(arch, blocks) for machine, arch in MACHINES.items()}
    print("| requirement | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, block in blocks.items():
        pin = block.split(" ;")[0].split(" --hash")[0].strip()
        # what pip skips here, by its marker, is not for Linux (pywin32)
        cells = [found.get(name, "not for Linux") for found in columns.values()]
        print(f"| `{pin}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
