"""`simulate --plot FILE`: which drawer writes FILE, by its suffix. PNG and SVG are
drawn by matplotlib, the optional extra `plot`, imported only for them; the page
(.html) by uPlot, which p1evse ships, so it needs nothing installed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from p1evse.errors import ConfigError
from p1evse.sim.figure import Figure

Writer = Callable[[Figure, Path], None]

IMAGE_SUFFIXES = (".png", ".svg")
PAGE_SUFFIX = ".html"
PLOT_SUFFIXES = (*IMAGE_SUFFIXES, PAGE_SUFFIX)
INSTALL = "pip install 'p1evse[plot]' (from a clone: uv run --extra plot p1evse simulate ...)"


def writer(path: Path) -> Writer:
    """What writes `path`; a suffix it cannot write, or matplotlib missing for one that
    needs it, is a ConfigError (checked before a day is run, not after)."""
    suffix = path.suffix.lower()
    if not path.parent.is_dir():
        raise ConfigError([f"--plot {str(path)!r}: no such directory {str(path.parent)!r}"])
    if path.exists() and not path.is_file():
        raise ConfigError([f"--plot {str(path)!r}: not a file (a directory?); give a file name"])
    if suffix == PAGE_SUFFIX:
        from p1evse.sim.plot_page import write_page

        return write_page
    if suffix not in IMAGE_SUFFIXES:
        raise ConfigError(
            [f"--plot {str(path)!r}: expected a file name ending in {', '.join(PLOT_SUFFIXES)}"]
        )
    try:
        from p1evse.sim.plot_image import write_image
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "matplotlib":
            raise
        raise ConfigError(
            [
                f"--plot {str(path)!r}: {suffix[1:].upper()} is drawn by matplotlib, which "
                f"is not installed: {INSTALL}; or write {PAGE_SUFFIX}, which needs nothing"
            ]
        ) from None
    return write_image


def write(figure: Figure, path: Path, draw: Writer) -> None:
    """`figure` drawn to `path`; a file it cannot write is one line (ConfigError)."""
    try:
        draw(figure, path)
    except OSError as exc:
        raise ConfigError(
            [f"--plot {str(path)!r}: cannot write it: {exc.strerror or exc}"]
        ) from None
