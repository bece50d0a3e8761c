"""A page that stops reading its event stream must not delay what the bridge publishes:
it is cut off once its queue is full, and publishing goes on at the same latency.

Measured end to end: a reading goes into the broker, the bridge publishes its value, a
test client receives it; the round trip with stalled pages open is compared with the
round trip without any page.
"""

from __future__ import annotations

import asyncio
import socket
import statistics

from tests.brokers import BrokerProcess
from tests.payloads import DELIVERED, GRID_IE
from tests.probe import Probe
from tests.test_web import serving, web_settings

STALLED_PAGES = 4
BASELINE_ROUND_TRIPS = 150
MAX_ROUND_TRIPS = 3000  # bounds the test if pages were never cut off
AFTER_DROP_ROUND_TRIPS = 100


def stalled_page(address: str) -> socket.socket:
    """Opens the event stream and never reads from it; a small receive buffer makes the
    server's send buffer fill sooner."""
    host, _, port = address.rpartition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        b"GET /api/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    )
    return sock


async def round_trip(probe: Probe, value: int) -> float:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    probe.publish(DELIVERED, f"{value / 1000:.3f}")
    assert await probe.next_payload(GRID_IE) == str(value)
    return loop.time() - sent


async def test_a_stalled_page_is_cut_off_and_does_not_delay_publishing(
    one_broker: BrokerProcess,
) -> None:
    # the queue rule alone: web.write_timeout, which would also cut them, is left out
    settings = web_settings(one_broker, web={"write_timeout": 300})
    async with serving(settings) as site:
        web = site.app.web
        assert web is not None
        # every reading makes a message, so the stalled pages' buffers fill in a second
        # instead of the minutes it takes at the usual (at most ten a second)
        web.push.push_period_s = 0.0
        value = 1
        baseline = []
        for _ in range(BASELINE_ROUND_TRIPS):
            baseline.append(await round_trip(site.probe, value))
            value += 1

        assert site.app.settings.web.listen is not None
        pages = [stalled_page(site.app.settings.web.listen) for _ in range(STALLED_PAGES)]
        try:
            stalled = []
            while web.fanout.dropped < STALLED_PAGES and value < MAX_ROUND_TRIPS:
                stalled.append(await round_trip(site.probe, value))
                value += 1
            assert web.fanout.dropped == STALLED_PAGES, "the stalled pages were never cut off"
            for _ in range(AFTER_DROP_ROUND_TRIPS):
                stalled.append(await round_trip(site.probe, value))
                value += 1
        finally:
            for page in pages:
                page.close()
    assert len(web.fanout) == 0

    def p90(samples: list[float]) -> float:
        return statistics.quantiles(samples, n=10)[-1]

    # generous bounds: a fan-out that waited for the stalled pages would block publishing
    # outright (the round trips would time out); the two must be of the same order
    assert statistics.median(stalled) < 3 * statistics.median(baseline) + 0.002
    assert p90(stalled) < 3 * p90(baseline) + 0.005
    assert max(stalled) < 0.5
