"""Live updates for pages: a page that does not keep up is cut off, never waited for,
and changes are pushed at most once per period."""

from __future__ import annotations

import asyncio
import json

from p1evse.config import Settings
from p1evse.model import GridPower, Reading
from p1evse.pipeline import Counters
from p1evse.site import new_state
from p1evse.web.stream import QUEUE_SIZE, Fanout, StatePush, sse_message


class Transport(asyncio.WriteTransport):
    aborted = False

    def abort(self) -> None:
        self.aborted = True


def parse(message: bytes | None) -> dict[str, object]:
    assert message is not None
    lines = message.decode().splitlines()
    assert lines[-2].startswith("data: ")  # one JSON line, then an empty line ends it
    data: dict[str, object] = json.loads(lines[-2].removeprefix("data: "))
    return data


def test_a_page_that_does_not_keep_up_is_cut_off_and_the_others_go_on() -> None:
    fanout = Fanout()
    stalled, reading = Transport(), Transport()
    slow = fanout.add(stalled)
    fast = fanout.add(reading)
    for i in range(QUEUE_SIZE + 5):
        fanout.send(sse_message("state", i))
        fast.queue.get_nowait()  # this one keeps up
    assert stalled.aborted
    assert not reading.aborted
    assert fanout.dropped == 1
    assert len(fanout) == 1
    assert slow.queue.qsize() == QUEUE_SIZE  # what it had not taken is all it cost
    fanout.close()
    assert fast.queue.get_nowait() is None  # the end of its stream


async def test_changes_are_coalesced_into_one_push_per_period() -> None:
    loop = asyncio.get_running_loop()
    state = new_state(Settings(), Counters(), loop.time)
    fanout = Fanout()
    push = StatePush(state, fanout, loop, push_period_s=0.2)
    state.listeners.append(push.changed)
    page = fanout.add(None)
    first = parse(push.first_message())
    assert first["full"] is True
    for watts in range(100):
        state.observe(Reading(loop.time(), watts, 0.0))
    state.observe(GridPower(loop.time(), 99, 100))
    message = parse(await asyncio.wait_for(page.queue.get(), 1))
    pushed_at = loop.time()
    assert message["full"] is False
    assert message["state"]["meter"]["net_w"] == 99  # type: ignore[index]
    assert page.queue.empty()  # a hundred changes, one message
    state.observe(Reading(loop.time(), 5.0, 0.0))
    message = parse(await asyncio.wait_for(page.queue.get(), 1))
    assert loop.time() - pushed_at >= 0.2 - 0.01
    # the chart rows since the previous push: its newest bucket again, updated
    newest = state.history.rows()[-1]
    assert newest.meter_w is not None
    assert message["history"]["rows"][-1][1] == round(newest.meter_w)  # type: ignore[index]
    push.close()
