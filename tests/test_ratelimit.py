"""Bad input logged at most once per period per kind, with how much was left out."""

from __future__ import annotations

from p1evse.ratelimit import RateLimiter


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_once_per_period_per_key_and_how_many_were_left_out() -> None:
    clock = Clock()
    limiter = RateLimiter(60.0, clock)
    assert limiter.note("nan") == ""  # the first one is logged, nothing left out
    assert limiter.note("nan") is None
    assert limiter.note("nan") is None
    assert limiter.note("negative") == ""  # another kind has its own period
    clock.now = 59.9
    assert limiter.note("nan") is None
    clock.now = 60.0
    assert limiter.note("nan") == " (3 more since the last report)"
    assert limiter.note("nan") is None
    clock.now = 120.0
    assert limiter.note("nan") == " (1 more since the last report)"
    clock.now = 180.0
    assert limiter.note("nan") == ""
