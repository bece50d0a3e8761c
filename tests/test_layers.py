"""The layers are a contract, checked here: pyproject.toml's [tool.importlinter]
contracts hold, a forbidden import breaks them, no module imports itself round a
cycle, and the pure pipeline loads no I/O library."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from tests.imports import loaded_after

ROOT = Path(__file__).resolve().parent.parent
IO_LIBRARIES = ("paho", "aiohttp", "h11", "yaml", "dsmr_parser", "serialx", "prometheus_client")


def lint_imports(cwd: Path, src: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package under `src`, with the contracts in cwd's pyproject."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))",
        ],
        cwd=cwd,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_contracts_hold() -> None:
    result = lint_imports(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("pipeline.py", "from p1evse import config"),  # the pure core reads no config
        ("pipeline.py", "import paho.mqtt.client"),  # ... and does no I/O
        ("sources/p1.py", "from p1evse.sinks import charger"),  # sources never use sinks
        ("web/server.py", "from p1evse import pipeline"),  # the page reads the status only
    ],
)
def test_a_forbidden_import_breaks_them(tmp_path: Path, module: str, forbidden: str) -> None:
    shutil.copytree(ROOT / "src" / "p1evse", tmp_path / "src" / "p1evse")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    changed = tmp_path / "src" / "p1evse" / module
    changed.write_text(changed.read_text() + f"\n{forbidden}  # noqa\n")
    result = lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[set[str]]:
    """Tarjan's algorithm over the package's own modules, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append(
                    (child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules)))
                )
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def test_no_import_cycles() -> None:
    """TYPE_CHECKING imports and imports inside functions count: a cycle held apart
    only by them is still one."""
    graph = grimp.build_graph("p1evse", cache_dir=None)
    modules = set(graph.modules)
    cycles = [c for c in strongly_connected(graph, modules) if len(c) > 1]
    assert cycles == []
    assert strongly_connected(graph, {"p1evse.model"}) == [{"p1evse.model"}]


def test_the_cycle_finder_finds_one() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    assert strongly_connected(graph, {"a", "b", "c"}) == [{"a", "b", "c"}]


def test_importing_the_pipeline_loads_no_io_library() -> None:
    assert loaded_after("import p1evse.pipeline", *IO_LIBRARIES) == []


def test_the_architecture_page_shows_the_layers_as_declared() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in contracts["contracts"] if c["type"] == "layers"]
    declared = [layer.replace("p1evse.", "") for layer in layers]
    page = (ROOT / "docs" / "architecture.md").read_text()
    [block] = re.findall(r"```\n(cli\n.*?)```", page, re.DOTALL)
    assert block.splitlines() == declared
