"""Log lines of one kind, coalesced: the first goes out at once, the rest of the next
second are counted and said in one line after it. A fleet logs per site: when the
broker or the meters' reader goes away, every site goes stale within a second, and ten
thousand "no valid reading" and "paused charging" lines would bury what matters."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

WINDOW_S = 1.0
# the loggers of a site's parts, whose lines repeat per site; the fleet's own are told
SITE_LOGGERS = ("p1evse.bridge", "p1evse.sinks.", "p1evse.sources.", "p1evse.status.")
NAMES_SHOWN = 5  # of the lines left out, the sites (first arguments) named in the summary


class Coalesce(logging.Filter):
    """The handlers' filter: lines of a site's parts from the loop's thread with the same
    logger and text
    (before its arguments are filled in) within WINDOW_S of the first are held back and
    counted, and told in one line at the window's end, through the same logger. One
    filter serves every handler: a line is judged once, for all of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._judged: tuple[logging.LogRecord, bool] | None = None
        self._thread = threading.get_ident()
        self._held: dict[tuple[str, str], list[str]] = {}  # kind -> first args left out
        self._counts: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            threading.get_ident() != self._thread
            or getattr(record, "summary", False)
            or not record.name.startswith(SITE_LOGGERS)
        ):
            return True
        judged = self._judged
        if judged is not None and judged[0] is record:
            return judged[1]
        let_through = self._judge(record)
        self._judged = (record, let_through)
        return let_through

    def _judge(self, record: logging.LogRecord) -> bool:
        kind = (record.name, str(record.msg))
        held = self._held.get(kind)
        if held is None:
            self._held[kind] = []
            self._counts[kind] = 0
            self._loop.call_later(WINDOW_S, self._summarize, kind, record)
            return True
        self._counts[kind] += 1
        if len(held) < NAMES_SHOWN and isinstance(record.args, tuple) and record.args:
            held.append(str(record.args[0]))
        return False

    def _summarize(self, kind: tuple[str, str], first: logging.LogRecord) -> None:
        names = self._held.pop(kind)
        count = self._counts.pop(kind)
        if not count:
            return
        shown = ", ".join(names) + (", …" if count > len(names) else "")
        summary = logging.LogRecord(
            first.name,
            first.levelno,
            first.pathname,
            first.lineno,
            "%d more like the line before within %g s (%s)",
            (count, WINDOW_S, shown),
            None,
        )
        summary.summary = True
        logging.getLogger(first.name).handle(summary)


@contextmanager
def coalesced(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Every handler of the root logger coalesces while this lasts."""
    handlers = list(logging.getLogger().handlers)
    coalesce = Coalesce(loop)
    for handler in handlers:
        handler.addFilter(coalesce)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(coalesce)
