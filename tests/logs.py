"""Waiting for a log line as an event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager


class LogEvent(logging.Handler):
    """Sets an event when a log message containing `fragment` is emitted."""

    def __init__(self, fragment: str, event: asyncio.Event) -> None:
        super().__init__()
        self._fragment = fragment
        self._event = event

    def emit(self, record: logging.LogRecord) -> None:
        if self._fragment in record.getMessage():
            self._event.set()


@contextmanager
def log_event(fragment: str, logger: str = "p1evse") -> Iterator[asyncio.Event]:
    """An event set once `logger` (or a child) logs a message containing `fragment`."""
    event = asyncio.Event()
    handler = LogEvent(fragment, event)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield event
    finally:
        target.removeHandler(handler)
