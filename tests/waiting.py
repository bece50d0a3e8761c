"""Waiting in tests for a state the service reaches, on its change events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from p1evse.status.state import SiteState
from tests.probe import EVENT_TIMEOUT_S


async def state_holds(
    state: SiteState, condition: Callable[[], bool], timeout: float = EVENT_TIMEOUT_S
) -> None:
    """Return as soon as `condition()` holds, checked at each change of the site's state."""
    changed = asyncio.Event()
    state.listeners.append(changed.set)
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                changed.clear()
                await changed.wait()
    finally:
        state.listeners.remove(changed.set)
