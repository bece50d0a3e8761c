"""The embedded broker that the demo runs, and the tests where mosquitto is missing."""

from __future__ import annotations

from p1evse.sim.broker import embedded_broker
from tests.probe import Probe

RETAINED, CLIENTS, SUBSCRIPTIONS = 50, 20, 400


async def test_clients_that_connect_while_another_subscribes_all_keep_their_session() -> None:
    """amqtt walks its table of subscriptions with awaits inside (the retained messages
    for a client that connects): a subscription made meanwhile ended that client's
    session with "dictionary changed size during iteration"."""
    async with embedded_broker() as port, Probe(port) as first, Probe(port) as churner:
        for number in range(RETAINED):
            first.publish(f"retained/{number}", "1", retain=True)
        await first.subscribe("retained/#")  # every client that connects gets them all
        for _ in range(RETAINED):
            await first.next("retained/#")
        for number in range(SUBSCRIPTIONS):  # sent at once, handled one by one while clients join
            churner.client.subscribe(f"churn/{number}")
        probes = [Probe(port) for _ in range(CLIENTS)]
        try:
            for probe in probes:  # one by one, through the churn
                await probe.__aenter__()
            for number, probe in enumerate(probes):
                await probe.subscribe(f"own/{number}")
                first.publish(f"own/{number}", str(number))
                assert await probe.next_payload(f"own/{number}") == str(number)
        finally:
            for probe in probes:
                await probe.__aexit__()
