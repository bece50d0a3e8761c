"""Capped exponential backoff with jitter."""

from __future__ import annotations

import random

from p1evse.backoff import Backoff


def test_delays_double_up_to_the_cap_each_jittered_into_its_upper_half() -> None:
    backoff = Backoff(initial=0.5, cap=4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    for delay, base in zip(delays, [0.5, 1, 2, 4, 4, 4, 4, 4], strict=True):
        assert base / 2 <= delay <= base


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(initial=1.0, cap=60.0, rng=random.Random(2))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


def test_instances_do_not_retry_in_lockstep() -> None:
    first, second = Backoff(rng=random.Random(3)), Backoff(rng=random.Random(4))
    assert [first.next_delay() for _ in range(5)] != [second.next_delay() for _ in range(5)]


def test_a_thousand_failures_never_overflow() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, rng=random.Random(5))
    assert max(backoff.next_delay() for _ in range(1000)) <= 30.0
