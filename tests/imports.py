"""What a fresh interpreter has imported after running some code: to check that a path
through p1evse leaves a library out (memory on a small board, the layers)."""

from __future__ import annotations

import ast
import subprocess
import sys


def loaded_after(code: str, *names: str) -> list[str]:
    """The modules named by `names` (each a package, with its submodules, or a module)
    that are loaded once `code` has run in a new interpreter."""
    dotted = tuple(f"{name}." for name in names)
    report = (
        "\nimport sys\n"
        f"print(sorted(m for m in sys.modules if m in {names!r} or m.startswith({dotted!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + report], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    return loaded
