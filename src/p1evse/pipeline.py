"""The pure core: meter values in, OpenEVSE values and events out.

No I/O, no asyncio, no wall clock. Every method takes the current time; the caller
(`bridge.py` in the service, a loop in tests and simulations) calls `tick()` at
`next_deadline()` so that timers (pair window, stale guard, fail-safe repeats) fire.
The rules, numbered as the comments below name them:

1. Pairing: net power = import - export from the two halves of one telegram (see
   `_nonzero_half` / `_zero_half`).
2. Zero is a value: a balanced house publishes 0.
3. Cadence: at most one value per `interval`, the time-weighted mean of the readings
   since the last one (each weighted by the time since the one before it: by the
   meter's clock where the readings carry it), sent when the reading that closes the
   interval arrives;
   `interval: 0` relays every reading. `mode: steady` keeps that cadence but changes
   the charger's current only when the house has changed: a switch (a step of `step_w`
   from one reading to the next) goes at once, a mean within `band_w` of the value sent
   before sends that value again, and a new value is followed by one more mean, which
   holds the car's answer to it (see `_steady_first` and `_held`).
4. Reserve: `reserve_w` is added to every published value.
5. Plausibility: non-finite, negative or too large halves are rejected and counted; so
   are such per-phase values and voltages (the reading's totals still count). A reading
   whose meter clock has not advanced and whose values are those of the reading before
   is a telegram sent again, not a new reading: it is counted and does not keep the
   stale guard quiet.
6. Stale guard: no valid reading for `stale_after` enters STALE once (pause / import /
   none); the first fresh reading leaves it. Time in which the caller could not run
   (`held`) is not the meter's silence and is not counted.
7. (sinks) Integer watts as text, QoS 0, not retained.
8. (config) No feedback loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import Field, model_validator

from p1evse.counts import Count
from p1evse.model import (
    Event,
    GridPower,
    PhaseKind,
    Phases,
    Reading,
    Rejected,
    Rejection,
    Side,
    StaleAction,
    StaleEntered,
    StaleLeft,
)
from p1evse.settings import Section

# OpenEVSE expects a feed every 5-10 s; with `interval: 0` there is no interval to
# repeat the fail-safe value at, so it repeats at this period.
FAILSAFE_PERIOD_WHEN_RELAYING_S = 5.0
# Mains voltages are about 230 V per phase; anything outside this is not a voltage.
MAX_VOLTAGE_V = 1000.0
# `steady`: a new value changes the car's current, which the meter shows a moment later
# and OpenEVSE measures about once a second; readings this soon after a value are the
# car answering it, not the house
SETTLE_S = 2.0
# `steady` holds a value while the house moves less than `band_w`; one amp more or less
# for the car moves the meter by more than this (207 W at 230 V - 10 %), so a change of
# the car's current is never held back
MAX_BAND_W = 200.0
# DSMR meters send a telegram every 1 s (DSMR 5) or 10 s (DSMR 4 and before): until a
# plain step of the meter's clock is seen, a step counts no more than the arrival gap and
# the shortest period (a 10 s meter's first held-back reading counts a little short, once)
SHORTEST_TELEGRAM_PERIOD_S = 1.0

FeedMode = Literal["interval", "steady"]
MAX_STALE_AFTER_S = 3600.0  # an hour: a longer silence is no meter's period


class PublishSettings(Section):
    """The `publish:` section: the rules above."""

    interval: float = Field(
        5.0, ge=0, le=300, description="publish the mean of each interval, s; 0 relays each"
    )
    mode: FeedMode = Field(
        "interval",
        description="interval: the mean of each interval; steady: a switch in the house at "
        "once, and the value sent before again while the mean stays within band_w of it",
    )
    step_w: float = Field(
        500.0,
        gt=0,
        le=50_000,
        description="steady: a change this large from one reading to the next is sent at once, W",
    )
    band_w: float = Field(
        80.0,
        ge=0,
        le=MAX_BAND_W,
        description="steady: an interval's mean closer than this to the value sent changes "
        "nothing, W",
    )
    pair_window: float = Field(
        0.5, ge=0, le=5, description="the two halves of one telegram arrive within this, s"
    )
    reserve_w: int = Field(
        0, ge=-10_000, le=10_000, description="added to every published value, W"
    )
    max_power_w: float = Field(
        50_000, gt=0, le=1_000_000, description="a reading above this is rejected, W"
    )
    stale_after: float = Field(
        30.0, gt=0, le=MAX_STALE_AFTER_S, description="no valid reading this long is stale, s"
    )
    on_stale: StaleAction = Field(
        StaleAction.PAUSE,
        description="when the meter falls silent: pause the charger, publish "
        "failsafe_import_w, or nothing",
    )
    failsafe_import_w: int = Field(
        10_000, ge=0, le=1_000_000, description="published while stale with on_stale import, W"
    )

    @model_validator(mode="after")
    def _windows_fit(self) -> PublishSettings:
        if self.mode == "steady" and self.interval <= 0:
            raise ValueError("mode steady needs an interval above 0: it holds each interval's mean")
        if self.mode == "steady" and self.step_w <= self.band_w:
            raise ValueError(
                f"step_w ({self.step_w:g} W) must be larger than band_w ({self.band_w:g} W)"
            )
        if self.stale_after <= self.pair_window:
            raise ValueError(
                f"stale_after ({self.stale_after} s) must be longer than "
                f"pair_window ({self.pair_window} s)"
            )
        return self


@dataclass(slots=True)
class Counters:
    halves: int = 0
    readings: int = 0
    absorbed: int = 0
    duplicates: int = 0
    published: int = 0
    held: int = 0
    stale_entered: int = 0
    rejected: dict[Rejection, int] = field(default_factory=dict)

    def sent(self, value: GridPower) -> None:
        """The charger has `value` (or the broker connection, over MQTT)."""
        self.published += 1

    def counts(self) -> list[Count]:
        return [
            Count("halves", "Import and export halves received (split topics)", self.halves),
            Count(
                "absorbed_halves",
                "Zero halves taken as the partner of a reading that a non-zero half made",
                self.absorbed,
            ),
            Count(
                "duplicate_halves",
                "Zero halves that repeated one still waiting for its partner",
                self.duplicates,
            ),
            Count("readings", "Complete meter readings accepted", self.readings),
            *(
                Count(
                    "rejected",
                    "Input values refused, by reason",
                    self.rejected.get(reason, 0),
                    {"reason": reason.value},
                )
                for reason in Rejection
            ),
            Count("published", "Values sent to the charger", self.published),
            Count(
                "held",
                "Values sent again unchanged: the house moved less than band_w (mode steady)",
                self.held,
            ),
            Count("stale_entered", "Times the stale guard acted", self.stale_entered),
        ]


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A zero half waiting up to `pair_window` for its partner (rule 1)."""

    side: Side
    at: float


class Pipeline:
    """All state of one meter: pairing halves, the averaging window, the stale guard."""

    def __init__(
        self,
        settings: PublishSettings,
        now: float,
        *,
        guard_from_start: bool = True,
        count_sent: bool = True,
    ) -> None:
        """`guard_from_start=False`: the stale guard waits for the first valid reading (a
        fleet's site, made on its first message, never pauses a charger it never fed).
        `count_sent=False`: a value counts as published once the charger has it (a sink
        that knows tells `counters.sent`), not when it is made."""
        self._settings = settings
        self._guard_from_start = guard_from_start
        self._count_sent = count_sent
        self.counters = Counters()
        self._latest: dict[Side, float | None] = {Side.IMPORT: None, Side.EXPORT: None}
        self._waiting: _Waiting | None = None
        # after a non-zero half completed a reading: the other side's zero is absorbed
        # until this time
        self._absorb_side: Side | None = None
        self._absorb_until = 0.0
        # averaging window (rule 3); None = nothing published since start or stale
        self._window_start: float | None = None
        self._previous_at = 0.0
        self._weighted_sum = 0.0
        self._weight = 0.0
        self._plain_sum = 0.0
        self._count = 0
        # `steady` (rule 3): the last value sent (reserve not included), whether the next
        # interval's mean is sent to show the charger its car's answer to a new value,
        # the reading before, and a switch in the house seen but not yet sent
        self._sent_w = 0.0
        self._settled_at = 0.0
        self._answer_due = False
        self._previous_net_w = 0.0
        self._switch_due = False
        # stale guard (rule 6)
        self._started = now
        self._last_reading_at: float | None = None
        self._stale_since: float | None = None
        self._stale_from_before = False  # begin_stale: the gap began before this pipeline
        self._held_s = 0.0  # since the last valid reading (`held`)
        self._next_failsafe: float | None = None
        # the latest complete reading, per-phase values included
        self.last_reading: Reading | None = None
        # per-phase values sent apart from the totals (split topics), by kind, L1-L3
        self._phases: dict[PhaseKind, list[float | None]] = {}
        # the last reading that carried the meter's own clock (rule 5)
        self._clocked: Reading | None = None
        self._meter_period: float | None = None  # the meter clock's last plain step, s
        self._meter_clock_stuck = False

    # -- state for observers -------------------------------------------------------

    @property
    def max_power_w(self) -> float:
        return self._settings.max_power_w

    @property
    def stale(self) -> bool:
        return self._stale_since is not None

    @property
    def last_valid_at(self) -> float:
        """When the last valid reading came, or the pipeline began if none has."""
        return self._last_reading_at if self._last_reading_at is not None else self._started

    @property
    def ever_valid(self) -> bool:
        """Whether a valid reading has come (here, or to whoever fed it before)."""
        return self._last_reading_at is not None

    def fed_elsewhere(self, at: float) -> None:
        """Another process fed the charger from this meter's reading of `at`, and is
        gone (a fleet took the site over): the stale guard counts from then, as that
        process's did, so a meter silent at the handover still has its charger paused."""
        if self._last_reading_at is None:
            self._last_reading_at = at
            self._held_s = 0.0

    def held(self, seconds: float) -> None:
        """The caller could not run for `seconds` (its process was stopped, the machine
        did not run it): no reading could arrive in that time, so it is not the meter's
        silence, and the stale guard waits that much longer. On resume the readings the
        meter sent meanwhile come, rather than a pause ahead of them and a release."""
        if self._stale_since is None:
            self._held_s += seconds

    def begin_stale(self, now: float) -> None:
        """Be stale already, without an event: the charger was paused for this meter
        before this pipeline began (a fleet let its site go while it was stale), so the
        first valid reading leaves stale and the pause is released."""
        if self._stale_since is None:
            self._stale_since = now
            self._stale_from_before = True
            self._window_start = None

    # -- inputs --------------------------------------------------------------------

    def half(self, side: Side, watts: float, now: float) -> list[Event]:
        """One half of a telegram (import or export power, W) arrived at `now`."""
        events: list[Event] = []
        self._expire(now, events)
        self.counters.halves += 1
        rejection = self._check_half(watts)
        if rejection is not None:
            self._count_rejection(rejection, f"{side.value} {watts!r} W", now, events, watts)
            self._drop_partner(side, now)
            return events
        if watts > 0:
            self._nonzero_half(side, watts, now, events)
        else:
            self._zero_half(side, now, events)
        return events

    def reading(self, reading: Reading, now: float) -> list[Event]:
        """A complete reading from a source that delivers both halves together."""
        events: list[Event] = []
        self._expire(now, events)
        for side, watts in ((Side.IMPORT, reading.import_w), (Side.EXPORT, reading.export_w)):
            rejection = self._check_half(watts)
            if rejection is not None:
                self._count_rejection(rejection, f"{side.value} {watts!r} W", now, events, watts)
                return events
        if self._clock_stuck(reading, now, events):
            return events
        self._latest[Side.IMPORT] = reading.import_w
        self._latest[Side.EXPORT] = reading.export_w
        self._complete(self._checked_phases(reading, now, events), now, events)
        return events

    def phase(self, kind: PhaseKind, index: int, value: float, now: float) -> list[Event]:
        """One per-phase value (index 0-2 for L1-L3) from a source that sends them apart
        from the totals (split topics); the next reading made from halves carries it."""
        events: list[Event] = []
        if not self._phase_rejected(kind, index, value, now, events):
            self._phases.setdefault(kind, [None, None, None])[index] = value
        return events

    def reject(
        self, reason: Rejection, detail: str, now: float, side: Side | None = None
    ) -> list[Event]:
        """A source could not turn a payload into a value; count it like any rejection.
        A half that was no number takes its zero partner with it, as an implausible one
        does (rule 1)."""
        events: list[Event] = []
        self._expire(now, events)
        self._count_rejection(reason, detail, now, events)
        if side is not None:
            self._drop_partner(side, now)
        return events

    def tick(self, now: float) -> list[Event]:
        """Fire the timers that are due at `now`."""
        events: list[Event] = []
        self._expire(now, events)
        return events

    def next_deadline(self) -> float | None:
        """The earliest time at which `tick` has something to do."""
        deadlines: list[float] = []
        if self._waiting is not None:
            deadlines.append(self._waiting.at + self._settings.pair_window)
        if self._stale_since is None:
            stale_at = self._stale_deadline()
            if stale_at is not None:
                deadlines.append(stale_at)
        elif self._next_failsafe is not None:
            deadlines.append(self._next_failsafe)
        return min(deadlines) if deadlines else None

    # -- rule 1: pairing -----------------------------------------------------------

    def _nonzero_half(self, side: Side, watts: float, now: float, events: list[Event]) -> None:
        waiting = self._waiting
        completes_partner = waiting is not None and waiting.side is side.other
        if waiting is not None and waiting.side is side:
            # the waiting zero's partner never came and a new telegram has begun
            self._complete_waiting(waiting, events, now)
        self._waiting = None
        self._latest[side] = watts
        self._latest[side.other] = 0.0  # the meter reports the totals exclusively
        if completes_partner:
            self._absorb_side = None
        else:
            self._absorb_side = side.other
            self._absorb_until = now + self._settings.pair_window
        if side is Side.IMPORT:
            self._complete(self._from_halves(now, watts, 0.0), now, events)
        else:
            self._complete(self._from_halves(now, 0.0, watts), now, events)

    def _zero_half(self, side: Side, now: float, events: list[Event]) -> None:
        self._latest[side] = 0.0
        waiting = self._waiting
        if waiting is not None:
            if waiting.side is side:
                self.counters.duplicates += 1
                return
            self._waiting = None
            self._complete(self._from_halves(now, 0.0, 0.0), now, events)
            return
        if self._absorb_side is side and now < self._absorb_until:
            self._absorb_side = None
            self.counters.absorbed += 1
            return
        self._absorb_side = None
        self._waiting = _Waiting(side, now)

    def _drop_partner(self, side: Side, now: float) -> None:
        """A rejected half leaves its telegram without a value: its zero partner, waiting
        or yet to come within the window, is dropped too (a reading from it alone would
        say 0 W where the meter said something else)."""
        waiting = self._waiting
        if waiting is not None and waiting.side is side.other:
            self._waiting = None
        else:
            self._absorb_side = side.other
            self._absorb_until = now + self._settings.pair_window

    def _complete_waiting(self, waiting: _Waiting, events: list[Event], now: float) -> None:
        """No partner within the window: the partner's latest value still holds, since
        DSMR-reader does not re-send an unchanged payload (an unknown partner is 0)."""
        self._waiting = None
        partner = self._latest[waiting.side.other] or 0.0
        if waiting.side is Side.IMPORT:
            self._complete(self._from_halves(waiting.at, 0.0, partner), now, events)
        else:
            self._complete(self._from_halves(waiting.at, partner, 0.0), now, events)

    def _from_halves(self, at: float, import_w: float, export_w: float) -> Reading:
        return Reading(
            at,
            import_w,
            export_w,
            self._phase_values(PhaseKind.IMPORT),
            self._phase_values(PhaseKind.EXPORT),
            self._phase_values(PhaseKind.VOLTAGE),
        )

    def _phase_values(self, kind: PhaseKind) -> Phases | None:
        values = self._phases.get(kind)
        return None if values is None else (values[0], values[1], values[2])

    # -- rule 5: plausibility ------------------------------------------------------

    def _check_half(self, watts: float) -> Rejection | None:
        return _check(watts, self._settings.max_power_w)

    def _phase_rejected(
        self, kind: PhaseKind, index: int, value: float, now: float, events: list[Event]
    ) -> bool:
        """Whether a per-phase value breaks the totals' rules (counted if it does)."""
        limit = MAX_VOLTAGE_V if kind is PhaseKind.VOLTAGE else self._settings.max_power_w
        rejection = _check(value, limit)
        if rejection is not None:
            self._count_rejection(rejection, f"L{index + 1} {kind.value} {value!r}", now, events)
        return rejection is not None

    def _checked_phases(self, reading: Reading, now: float, events: list[Event]) -> Reading:
        """The reading without the per-phase values that are not plausible, each of
        those counted; the totals stand on their own."""
        imports = self._checked(reading.phase_import_w, PhaseKind.IMPORT, now, events)
        exports = self._checked(reading.phase_export_w, PhaseKind.EXPORT, now, events)
        volts = self._checked(reading.phase_voltage_v, PhaseKind.VOLTAGE, now, events)
        if (imports, exports, volts) == (
            reading.phase_import_w,
            reading.phase_export_w,
            reading.phase_voltage_v,
        ):
            return reading
        return replace(
            reading, phase_import_w=imports, phase_export_w=exports, phase_voltage_v=volts
        )

    def _checked(
        self, values: Phases | None, kind: PhaseKind, now: float, events: list[Event]
    ) -> Phases | None:
        if values is None:
            return None
        kept = [
            None
            if value is None or self._phase_rejected(kind, index, value, now, events)
            else value
            for index, value in enumerate(values)
        ]
        return (kept[0], kept[1], kept[2])

    def _clock_stuck(self, reading: Reading, now: float, events: list[Event]) -> bool:
        """True for a reading whose meter clock has not moved on since the reading before
        and whose values are that reading's (a gateway re-sending a cached telegram). A
        clock that stands still (a meter whose clock was never set) does not make
        readings that say something else repeats. Counted each time; only the first of
        a run is an event, so the log says it once."""
        meter_time = reading.meter_time
        if meter_time is None:
            return False
        previous, self._clocked = self._clocked, reading
        if (
            previous is None
            or previous.meter_time is None
            or meter_time > previous.meter_time
            or replace(reading, at=previous.at, meter_time=previous.meter_time) != previous
        ):
            self._meter_clock_stuck = False
            return False
        detail = f"meter clock stuck at {meter_time.isoformat()}: the same telegram again"
        self._count_rejection(
            Rejection.METER_CLOCK_STUCK, detail, now, events, event=not self._meter_clock_stuck
        )
        self._meter_clock_stuck = True
        return True

    def _count_rejection(
        self,
        reason: Rejection,
        detail: str,
        now: float,
        events: list[Event],
        value: float | None = None,
        *,
        event: bool = True,
    ) -> None:
        rejected = self.counters.rejected
        rejected[reason] = rejected.get(reason, 0) + 1
        if event:
            events.append(Rejected(now, reason, detail, value))

    # -- rule 3: cadence; rule 6: leaving stale ------------------------------------

    def _complete(self, reading: Reading, now: float, events: list[Event]) -> None:
        """A complete reading: it goes out as an event (for observers), then into the
        averaging window."""
        self.counters.readings += 1
        at, net_w = reading.at, reading.net_w
        previous, self.last_reading = self.last_reading, reading
        if self._stale_since is not None:
            gap = None if self._stale_from_before else now - self.last_valid_at
            events.append(StaleLeft(now, gap))
            self._stale_since = None
            self._stale_from_before = False
            self._next_failsafe = None
        self._last_reading_at = at
        self._held_s = 0.0
        events.append(reading)
        settings = self._settings
        interval = settings.interval
        steady = settings.mode == "steady"
        if interval <= 0 or self._window_start is None:
            self._publish(at, net_w, 1, events)
            self._start_window(at)
            self._previous_net_w, self._answer_due, self._switch_due = net_w, steady, False
            return
        if steady and self._steady_first(at, net_w, events):
            return
        weight = self._stands_for(reading, previous)
        self._weighted_sum += net_w * weight
        self._weight += weight
        self._plain_sum += net_w
        self._count += 1
        self._previous_at = at
        if at - self._window_start >= interval:
            # time-weighted: each reading stands for the time since the one before it
            mean = (
                self._weighted_sum / self._weight
                if self._weight > 0
                else self._plain_sum / self._count
            )
            held = steady and self._held(mean)
            self._publish(at, self._sent_w if held else mean, self._count, events, held=held)
            self._start_window(at)

    def _stands_for(self, reading: Reading, previous: Reading | None) -> float:
        """The time a reading stands for in the mean (rule 3): since the reading before
        it, by the meter's clock when both carry it and it moved on by up to
        `stale_after`, else by their arrival. Telegrams that a gateway or Wi-Fi held
        back come together; each stands for the seconds the meter measured them apart,
        not for the moments between their arrivals (the first of them for all the wait).
        A step of the meter's clock longer than the arrivals' and the meter's period
        (its last plain step; before one, the shortest DSMR period) together is the clock
        set forward: it counts as that much, no more."""
        arrived = reading.at - self._previous_at
        meter_time = reading.meter_time
        before = previous.meter_time if previous is not None else None
        if meter_time is not None and before is not None:
            seconds = (meter_time - before).total_seconds()
            if 0 < seconds <= self._settings.stale_after:
                period = self._meter_period or SHORTEST_TELEGRAM_PERIOD_S
                if seconds > arrived + period:
                    return arrived + period  # the clock was set forward: not time measured
                self._meter_period = seconds
                return seconds
        return arrived

    def _steady_first(self, at: float, net_w: float, events: list[Event]) -> bool:
        """`steady`: a switch in the house (a step of `step_w` from one reading to the
        next) is sent at once, or once the car has settled after the value before;
        readings while it settles stay out of the mean. True when the reading is done."""
        if abs(net_w - self._previous_net_w) >= self._settings.step_w:
            self._switch_due = True
        self._previous_net_w = net_w
        if at < self._settled_at:
            self._previous_at = at
            return True
        if not self._switch_due:
            return False
        self._publish(at, net_w, 1, events)
        self._start_window(at)
        self._answer_due, self._switch_due = True, False
        return True

    def _held(self, mean: float) -> bool:
        """`steady`: whether the value sent before goes again instead of `mean`. A new
        value is always followed by one mean (the car's answer to it is in that mean, so
        the charger sees its own current taken off); after that the value holds until a
        mean moves `band_w` away from it."""
        if self._answer_due:
            self._answer_due = False
            return False
        if abs(mean - self._sent_w) >= self._settings.band_w:
            self._answer_due = True
            return False
        return True

    def _start_window(self, at: float) -> None:
        self._window_start = at
        self._previous_at = at
        self._weighted_sum = self._weight = self._plain_sum = 0.0
        self._count = 0

    def _publish(
        self, at: float, mean_w: float, readings: int, events: list[Event], *, held: bool = False
    ) -> None:
        # rule 2: zero is a value; rule 4: the reserve shifts every value
        if not held and mean_w != self._sent_w:
            self._settled_at = at + SETTLE_S  # `steady`: the car answers a new value
        self._sent_w = mean_w
        reading = self.last_reading
        voltage = None if reading is None else reading.mean_voltage_v
        watts = round(mean_w) + self._settings.reserve_w
        if held:
            self.counters.held += 1
        value = GridPower(at, watts, readings, False, voltage, held)
        self._emit(value, events)

    def _emit(self, value: GridPower, events: list[Event]) -> None:
        if self._count_sent:
            self.counters.sent(value)
        events.append(value)

    # -- timers: pair window, rule 6: entering stale, fail-safe repeats -------------

    def _stale_deadline(self) -> float | None:
        if self._last_reading_at is None and not self._guard_from_start:
            return None
        return self.last_valid_at + self._settings.stale_after + self._held_s

    def _expire(self, now: float, events: list[Event]) -> None:
        waiting = self._waiting
        if waiting is not None and now >= waiting.at + self._settings.pair_window:
            self._complete_waiting(waiting, events, now)
        if self._stale_since is None:
            stale_at = self._stale_deadline()
            if stale_at is not None and now >= stale_at:
                self._enter_stale(now, events)
        elif self._next_failsafe is not None and now >= self._next_failsafe:
            self._publish_failsafe(now, events)

    def _enter_stale(self, now: float, events: list[Event]) -> None:
        action = self._settings.on_stale
        self._stale_since = now
        self._window_start = None  # a gap is never averaged over
        self.counters.stale_entered += 1
        events.append(StaleEntered(now, self._last_reading_at, action))
        if action is StaleAction.IMPORT:
            self._publish_failsafe(now, events)

    def _publish_failsafe(self, now: float, events: list[Event]) -> None:
        period = self._settings.interval or FAILSAFE_PERIOD_WHEN_RELAYING_S
        self._next_failsafe = now + period
        self._emit(GridPower(now, self._settings.failsafe_import_w, 0, failsafe=True), events)


def _check(value: float, limit: float) -> Rejection | None:
    """Rule 5 for one value: finite, not negative, not above `limit`."""
    if not math.isfinite(value):
        return Rejection.NON_FINITE
    if value < 0:
        return Rejection.NEGATIVE
    if value > limit:
        return Rejection.IMPLAUSIBLE
    return None
