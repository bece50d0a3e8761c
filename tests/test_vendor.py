"""The vendored charting library is the package's files, unchanged, with its licence."""

from __future__ import annotations

import hashlib
import re

from p1evse.web.assets import UPLOT_DIR, UPLOT_SCRIPT


def test_the_vendored_files_are_the_ones_recorded() -> None:
    record = (UPLOT_DIR / "VENDORED.md").read_text(encoding="utf-8")
    sums = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", record, re.MULTILINE))
    assert set(sums) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in sums.items():
        assert hashlib.sha256((UPLOT_DIR / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (UPLOT_DIR / "LICENSE").read_text(encoding="utf-8")


def test_the_recorded_version_is_the_one_in_the_script() -> None:
    record = (UPLOT_DIR / "VENDORED.md").read_text(encoding="utf-8")
    version = re.search(r"`uplot` (\d+\.\d+\.\d+)", record)
    assert version is not None
    head = UPLOT_SCRIPT.read_text(encoding="utf-8")[:200]
    assert f"(v{version[1]})" in head
