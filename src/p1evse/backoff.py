"""Capped exponential backoff with jitter, for every reconnecting endpoint."""

from __future__ import annotations

import random


class Backoff:
    """Delays of initial·2ⁿ, capped, each scaled by a random factor in [0.5, 1].

    The jitter keeps many instances (or many sites) from reconnecting in lockstep after
    a broker restart.
    """

    def __init__(
        self, initial: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self._initial = initial
        self.cap_s = cap
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self.cap_s, self._initial * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        jitter: float = self._rng.uniform(0.5, 1.0)
        return base * jitter

    def reset(self) -> None:
        self._attempt = 0
