"""A fleet's state topics: a site's state soon after its first change, then at most once
a period (with jitter) however often it changes; all again after a reconnect, spread
over the period; nothing for a site that is gone."""

from __future__ import annotations

import json
import random

from p1evse.fleet.state_topics import JITTER, STATE_PERIOD_S, TICK_S, StateTopics
from p1evse.sim.virtual import VirtualBroker, VirtualClock


def setup() -> tuple[VirtualClock, VirtualBroker, StateTopics, list[tuple[str, dict[str, object]]]]:
    clock = VirtualClock(1000.0)
    broker = VirtualBroker()
    broker.connect()
    sent: list[tuple[str, dict[str, object]]] = []
    for site in ("a", "b"):
        broker.subscribe(f"s/{site}", lambda p, site=site: sent.append((site, json.loads(p))))
    states = StateTopics(
        broker,
        clock,
        lambda site: (f"s/{site}", {"id": site}) if site in ("a", "b") else None,
        wall=lambda: 5.0,
        rng=random.Random(1),
    )
    return clock, broker, states, sent


def test_a_change_goes_out_within_a_tick_then_at_most_once_a_period() -> None:
    clock, _, states, sent = setup()
    states.changed("a")
    clock.advance(clock.time() + TICK_S)
    assert sent == [("a", {"id": "a", "at": 5.0})]
    for second in range(1, int(STATE_PERIOD_S * (1 - JITTER))):
        states.changed("a")
        clock.advance(1000.0 + TICK_S + second)
    assert len(sent) == 1  # changed every second: still once
    clock.advance(1000.0 + TICK_S + STATE_PERIOD_S * (1 + JITTER) + TICK_S)
    assert len(sent) == 2


def test_after_a_reconnect_every_site_again_spread_over_the_period() -> None:
    clock, _, states, sent = setup()
    states.changed("a")
    states.changed("b")
    clock.advance(clock.time() + TICK_S)
    assert sorted(site for site, _ in sent) == ["a", "b"]
    sent.clear()
    states.connected()
    clock.advance(clock.time() + STATE_PERIOD_S + TICK_S)
    assert sorted(site for site, _ in sent) == ["a", "b"]


def test_a_site_gone_sends_nothing() -> None:
    clock, _, states, sent = setup()
    states.changed("gone")
    states.changed("a")
    states.forget("a")
    clock.advance(clock.time() + 2 * TICK_S)
    assert sent == []
