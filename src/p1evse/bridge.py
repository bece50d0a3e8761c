"""One meter's runtime: feeds its pipeline, fires the pipeline's timers on the event
loop, and fans the resulting events out to sinks and observers.

This is the only place where the pure pipeline meets the clock. Thousands of sites in
one process will be thousands of bridges, one pipeline each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from p1evse.clock import Clock, Timer
from p1evse.model import (
    Event,
    GridPower,
    PhaseKind,
    Reading,
    Rejected,
    Rejection,
    Side,
    StaleEntered,
    StaleLeft,
)
from p1evse.pipeline import Pipeline
from p1evse.ratelimit import RateLimiter
from p1evse.sinks import Sink

log = logging.getLogger(__name__)

REJECTION_LOG_PERIOD_S = 60.0


class Bridge:
    """Implements the sources' `Intake`: stamps each input with the clock's time, and
    hands the pipeline's events to the sinks, then to the observers."""

    def __init__(
        self,
        pipeline: Pipeline,
        sinks: Sequence[Sink],
        clock: Clock,
        observers: Sequence[Callable[[Event], None]] = (),
        name: str = "p1evse",
        holds: Callable[[float], float] | None = None,
    ) -> None:
        """`holds`: how long the loop was held in all up to a time (`LoopWatch.held`),
        told to the pipeline before anything it does."""
        self.pipeline = pipeline
        self._sinks = sinks
        self._clock = clock
        self.observers = list(observers)
        self._name = name
        self._timer: Timer | None = None
        self._holds = holds
        self._held_s = holds(clock.time()) if holds is not None else 0.0
        # asked before the sinks hear that the readings stopped: False keeps it from
        # them and from the observers (a fleet whose broker deals this meter to another
        # process now lets the site go instead)
        self.stale_gate: Callable[[], bool] | None = None
        self._rejection_log = RateLimiter(REJECTION_LOG_PERIOD_S, clock.time)
        self._failure_log = RateLimiter(REJECTION_LOG_PERIOD_S, clock.time)
        # `--log-level debug` shows every message; decided once, not per message
        self._debug = log.isEnabledFor(logging.DEBUG)

    def start(self) -> None:
        self._reschedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- Intake ----------------------------------------------------------------------

    def half(self, side: Side, watts: float) -> None:
        if self._debug:
            log.debug("%s: %s %g W", self._name, side.value, watts)
        self._dispatch(self.pipeline.half(side, watts, self._now()))

    def reading(self, reading: Reading) -> None:
        if self._debug:
            log.debug(
                "%s: import %g W, export %g W", self._name, reading.import_w, reading.export_w
            )
        self._dispatch(self.pipeline.reading(reading, self._now()))

    def phase(self, kind: PhaseKind, index: int, value: float) -> None:
        self._dispatch(self.pipeline.phase(kind, index, value, self._now()))

    def reject(self, reason: Rejection, detail: str, side: Side | None = None) -> None:
        self._dispatch(self.pipeline.reject(reason, detail, self._now(), side))

    def _now(self) -> float:
        now = self._clock.time()
        if self._holds is not None:
            held = self._holds(now)
            if held > self._held_s:
                self.pipeline.held(held - self._held_s)
                self._held_s = held
        return now

    # -- events ----------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            self._dispatch_one(event)
        self._reschedule()

    def _dispatch_one(self, event: Event) -> None:
        if isinstance(event, GridPower):
            if self._debug:
                log.debug("%s: publish %d W (%s)", self._name, event.watts, _covers(event))
            for sink in self._sinks:
                self._deliver(sink.grid_power, event)
        elif isinstance(event, Rejected):
            self._log_rejection(event)
        elif isinstance(event, StaleEntered):
            if self.stale_gate is not None and not self.stale_gate():
                return
            self._log_stale(event)
            for sink in self._sinks:
                self._deliver(sink.stale_entered, event)
        elif isinstance(event, StaleLeft):
            if event.gap_s is None:
                log.info("%s: readings are back (the pause was taken over)", self._name)
            else:
                log.info("%s: readings are back after %.1f s", self._name, event.gap_s)
            for sink in self._sinks:
                self._deliver(sink.stale_left, event)
        for observer in self.observers:
            self._deliver(observer, event)

    def _deliver(self, receiver: Callable[[Any], None], event: Event) -> None:
        """One sink or observer takes one event: a bug in it must not keep this event
        from the others, nor the next one, nor end the source that called."""
        try:
            receiver(event)
        except Exception as exc:
            more = self._failure_log.note((receiver.__qualname__, type(exc).__name__))
            if more is not None:
                log.error(
                    "%s: %s failed on %s%s",
                    self._name,
                    receiver.__qualname__,
                    event,
                    more,
                    exc_info=exc,
                )

    def _log_rejection(self, event: Rejected) -> None:
        more = self._rejection_log.note(event.reason)
        if more is None:
            return
        hint = ""
        if event.reason is Rejection.IMPLAUSIBLE:
            hint = f"; above publish.max_power_w = {self.pipeline.max_power_w:g} W — wrong unit?"
        log.warning(
            "%s: rejected input (%s): %s%s%s",
            self._name,
            event.reason.value,
            event.detail,
            hint,
            more,
        )

    def _log_stale(self, event: StaleEntered) -> None:
        if event.last_reading_at is None:
            since = "since start-up"
        else:
            since = f"for {event.at - event.last_reading_at:.1f} s"
        log.warning("%s: no valid reading %s; on_stale: %s", self._name, since, event.action.value)

    # -- timers ----------------------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self.pipeline.next_deadline()
        timer = self._timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first; a too-early tick finds nothing and reschedules
            timer.cancel()
        self._timer = self._clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch(self.pipeline.tick(self._now()))


def _covers(value: GridPower) -> str:
    if value.failsafe:
        return "fail-safe"
    readings = f"{value.readings} reading{'s' if value.readings != 1 else ''}"
    return f"held: the mean of {readings} stayed close" if value.held else f"mean of {readings}"
