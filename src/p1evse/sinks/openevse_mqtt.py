"""OpenEVSE over MQTT: the grid feed, and the pause claim of the stale guard."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from p1evse.errors import InputRejected
from p1evse.inputs import load_json
from p1evse.model import GridPower, StaleAction, StaleEntered, StaleLeft
from p1evse.ratelimit import RateLimiter
from p1evse.sinks.charger import (
    READ_BACK_FIELDS,
    ChargerState,
    PauseIntent,
    ReportLog,
    feed_voltage,
)

if TYPE_CHECKING:
    from p1evse.clock import Clock, Timer
    from p1evse.counts import Count
    from p1evse.mqtt import MqttPort, PayloadHandler
    from p1evse.sinks.charger import OpenevseSettings

log = logging.getLogger(__name__)

PAUSE_CLAIM = json.dumps({"state": "disabled"}, separators=(",", ":"))
RELEASE = "release"
MQTT_CLAIM_PRIORITY = 500  # OpenEVSE's EvseManager_Priority_MQTT
# a change of divert mode moves the pause claim at most this often (see _mode_changed)
MODE_CLAIM_GAP_S = 5.0
# OpenEVSE's report of its MQTT claim slot (`<base>/claim`): a few fields
MAX_CLAIM_BYTES = 1024
# a pause missing from the charger's claim slot is sent again at most this often (another
# MQTT client that keeps clearing the shared slot is not fought in a tight loop)
CLAIM_AGAIN_GAP_S = 5.0
CLAIM_AGAIN_LOG_PERIOD_S = 60.0


class OpenEvseMqttSink:
    """Publishes grid_ie as integer watts (QoS 0, not retained: rule 7), and reads the
    charger's state back from its base topic.

    Every MQTT client shares OpenEVSE's one MQTT claim slot, so p1evse releases only a
    claim it has sent itself; a claim or release that could not be sent while the
    broker was away is sent on reconnect. When the meter's readings come through the
    same broker, a pause wanted after a reconnect waits `reconnect_settle_s` (the stale
    timeout) for them: they were only missing because the broker was, and a pause sent
    on reconnect would be released again a moment later.

    OpenEVSE acts only on a claim it receives while connected (`claim/set` is not
    retained), and says what its claim slot holds on `<base>/claim` (retained, on every
    change and on connecting). A pause this sink holds that the slot does not show (sent
    while the charger was away, say rebooting with the router) is sent again; so is a
    release the slot does not show yet, until it once has (a pause set after that may be
    another client's, and is never released).
    """

    def __init__(
        self,
        settings: OpenevseSettings,
        broker: MqttPort,
        charger: ChargerState,
        clock: Clock,
        reconnect_settle_s: float = 0.0,
    ) -> None:
        self._value_topics = [settings.grid_ie_topic]
        if settings.shaper and settings.live_pwr_topic != settings.grid_ie_topic:
            self._value_topics.append(settings.live_pwr_topic)  # one topic may drive both
        self._vrms_topic = settings.vrms_topic if settings.voltage else None
        self._claim_topic = settings.claim_topic
        self._broker = broker
        self._clock = clock
        self.charger = charger
        self.pause = PauseIntent(charger, clock.time)
        self._report_log = ReportLog(clock.time)
        self._settle_s = reconnect_settle_s
        self._settling: Timer | None = None
        self._base_topic = settings.base_topic
        self._claiming = False  # a claim is being published (see _sync_claim)
        self._spare_check: Timer | None = None  # when a spared charger's report lapses
        # a mode report that moves the claim does so at most once per MODE_CLAIM_GAP_S
        self._mode_claimed_at = -math.inf
        self._mode_check: Timer | None = None
        # the charger's MQTT claim slot as it last said (None: not said, or not a claim)
        self.slot: dict[str, Any] | None = None
        self.slot_listeners: list[Callable[[dict[str, Any] | None], None]] = []
        self._claimed_again_at = -math.inf  # the last claim or release sent, for the slot
        self._release_unseen = False  # a release sent that the slot has not shown yet
        self._slot_check: Timer | None = None
        self._claim_again_log = RateLimiter(CLAIM_AGAIN_LOG_PERIOD_S, clock.time)
        # a pause held at close is kept: the dead-man's switch tells the next run of it
        self.keeps_pause = False
        self.heard = False  # anything from the charger on its base topic
        self._unheard_check: Timer | None = None

    def subscriptions(self) -> dict[str, PayloadHandler]:
        """The charger's reports it reads back, by topic."""
        return {f"{self._base_topic}/{field}": _Report(self, field) for field in READ_BACK_FIELDS}

    def slot_subscription(self) -> dict[str, PayloadHandler]:
        """The charger's MQTT claim slot: retained, and read as it is retained."""
        return {f"{self._base_topic}/claim": self.on_slot}

    def grid_power(self, value: GridPower) -> None:
        # the voltage first: OpenEVSE's divert uses the voltage it has when a value comes
        if self._vrms_topic is not None:
            volts = feed_voltage(value)
            if volts is not None:
                self._broker.publish(self._vrms_topic, f"{volts:g}")
        payload = str(value.watts)
        for topic in self._value_topics:
            self._broker.publish(topic, payload)

    def stale_entered(self, event: StaleEntered) -> None:
        if event.action is StaleAction.PAUSE:
            self.pause.stale = True
            self._sync_claim()

    def stale_left(self, event: StaleLeft) -> None:
        self.pause.stale = False
        self._sync_claim()

    async def run(self) -> None:
        """Nothing of its own to run: the broker connection carries everything."""

    def counts(self) -> list[Count]:
        """Nothing of its own: the broker connection counts what it sends, the charger's
        state what it refuses of the reports."""
        return []

    def leave(self) -> None:
        """No claim is sent from now on; the one the charger holds stays."""
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        if self._slot_check is not None:
            self._slot_check.cancel()
            self._slot_check = None
        if self._unheard_check is not None:
            self._unheard_check.cancel()
            self._unheard_check = None
        self._watch_spare(None)
        if self._mode_check is not None:
            self._mode_check.cancel()
            self._mode_check = None

    async def close(self) -> None:
        """Release the pause, unless the meter is silent and something will tell the
        next run that the charger is paused (`keeps_pause`: the dead-man's switch's
        marker): released, the charger would charge on at its last rate, fed by no one."""
        self.leave()
        if self.keeps_pause and self.pause.stale and self.claim_sent:
            log.warning(
                "stopping while the meter is silent: the charger stays paused (%s); the "
                "next run of p1evse releases it once its readings are fresh",
                self._claim_topic,
            )
            return
        self.pause.stale = False
        self._sync_claim()

    def adopt_pause(self) -> None:
        """The charger holds a pause claim of this service's from before this sink was
        made (a fleet let the site go while it was paused): it is this sink's now, and
        the first fresh reading releases it."""
        self.pause.stale = True
        self.pause.claimed(True)

    @property
    def claim_sent(self) -> bool:
        return self.pause.held

    def on_report(self, field: str, payload: bytes | bytearray) -> None:
        """A report of the charger's on `<base>/<field>`."""
        self.heard = True
        try:
            self.charger.update(field, payload, self._clock.time())
        except InputRejected as exc:
            self._report_log.refused(exc, f"{self._base_topic}/{field}", payload)
            return
        if field == "divertmode" and not self.pause.settled():
            self._mode_changed()

    def on_slot(self, payload: bytes | bytearray) -> None:
        """What the charger's MQTT claim slot holds (`{"state": "null"}`: nothing)."""
        self.heard = True
        try:
            slot = load_json(payload, MAX_CLAIM_BYTES)
        except InputRejected as exc:
            self._report_log.refused(exc, f"{self._base_topic}/claim", payload)
            return
        self.slot = slot if isinstance(slot, dict) else None
        if self.slot is not None and not is_pause_claim(self.slot):
            self._release_unseen = False
        for listener in self.slot_listeners:
            listener(self.slot)
        self._check_slot()

    def _check_slot(self) -> None:
        """Send the pause again if the charger's slot does not hold it, or the release
        if the slot still holds the pause it released."""
        slot = self.slot
        if slot is None or self._claiming:
            return
        if self.claim_sent and self.pause.wanted():
            if slot.get("state") == "disabled":
                return
            payload, what = PAUSE_CLAIM, "not p1evse's pause"
        elif self._release_unseen and not self.claim_sent and is_pause_claim(slot):
            payload, what = RELEASE, "the pause p1evse released"
        else:
            return
        due = self._claimed_again_at + CLAIM_AGAIN_GAP_S
        if self._clock.time() < due:
            if self._slot_check is None:
                self._slot_check = self._clock.call_at(due, self._slot_due)
            return
        if not self._broker.publish(self._claim_topic, payload, qos=1):
            return  # sent on reconnect: the charger says its slot again then
        self._claimed_again_at = self._clock.time()
        more = self._claim_again_log.note(payload)
        if more is not None:
            log.warning(
                "OpenEVSE's MQTT claim slot holds %s, %s (the charger was away when it was "
                "sent, or another MQTT client changed it): sent %s %s again%s",
                json.dumps(slot)[:120],
                what,
                self._claim_topic,
                payload,
                more,
            )

    def _slot_due(self) -> None:
        self._slot_check = None
        self._check_slot()

    def warn_if_unheard(self, after_s: float) -> None:
        """Say so if the charger has said nothing on its base topic (its claim slot is
        retained there, its status comes every 30 s): the pause would go nowhere."""
        self._unheard_check = None
        if self.heard:
            return
        if not self._broker.connected:  # looked at again once it may be
            when = self._clock.time() + after_s
            self._unheard_check = self._clock.call_at(when, lambda: self.warn_if_unheard(after_s))
            return
        log.warning(
            "nothing from OpenEVSE on %s/… in %g s: is openevse.base_topic the charger's "
            "MQTT base topic (Services → MQTT; OpenEVSE's own default is its host name, "
            "openevse-xxxx)? The pause claim goes to %s",
            self._base_topic,
            after_s,
            self._claim_topic,
        )

    def connected(self) -> None:
        """The broker connection is (back) up."""
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        if self._settle_s > 0 and self.pause.wanted() and not self.claim_sent:
            self._settling = self._clock.call_at(self._clock.time() + self._settle_s, self._settled)
            return
        self._sync_claim()

    def _settled(self) -> None:
        self._settling = None
        self._sync_claim()

    def _sync_claim(self) -> None:
        """Claim or release as the pause intent wants. A charger's report may come back
        while the claim is being published (an in-process broker delivers at once): it
        does not send the claim again, and what it changed is looked at once the publish
        is done."""
        if self._claiming:
            return
        self._claiming = True
        try:
            while (wanted := self.pause.wanted()) != self.claim_sent:
                payload = PAUSE_CLAIM if wanted else RELEASE
                if not self._broker.publish(self._claim_topic, payload, qos=1):
                    return
                self._claimed_again_at = self._clock.time()
                self._release_unseen = not wanted
                self.pause.claimed(wanted)
                if wanted:
                    log.warning("paused charging: claimed %s %s", self._claim_topic, payload)
                else:
                    log.info("released the pause claim on %s", self._claim_topic)
        finally:
            self._claiming = False
        self._watch_spare(self.pause.spared_until())

    def _mode_changed(self) -> None:
        """Claim or release for a change of divert mode: at once, unless the last such
        change was less than MODE_CLAIM_GAP_S ago (a mode flipping on the broker must
        not flip the charger with it); then once that gap is over, as the mode is then."""
        if self._mode_check is not None:
            return  # one is due
        due = self._mode_claimed_at + MODE_CLAIM_GAP_S
        if self._clock.time() < due:
            self._mode_check = self._clock.call_at(due, self._mode_due)
            return
        self._mode_claimed_at = self._clock.time()
        self._sync_claim()

    def _mode_due(self) -> None:
        self._mode_check = None
        if not self.pause.settled():
            self._mode_changed()

    def _watch_spare(self, until: float | None) -> None:
        """Look again when the report of normal mode that spares the charger lapses: a
        charger that stopped reporting is paused then (a live one reports every 30 s)."""
        if self._spare_check is not None:
            if self._spare_check.when() == until:
                return
            self._spare_check.cancel()
        self._spare_check = None if until is None else self._clock.call_at(until, self._spare_due)

    def _spare_due(self) -> None:
        self._spare_check = None
        self._sync_claim()


class _Report:
    """The handler of one field of the charger's reports: a fleet has seven per site,
    and this is a third of the memory of a `functools.partial`."""

    __slots__ = ("_field", "_sink")

    def __init__(self, sink: OpenEvseMqttSink, field: str) -> None:
        self._sink = sink
        self._field = field

    def __call__(self, payload: bytes | bytearray) -> None:
        self._sink.on_report(self._field, payload)


def is_pause_claim(claim: dict[str, Any]) -> bool:
    """OpenEVSE's `<base>/claim` as p1evse's pause (or the dead-man's will) leaves it:
    `{"priority": 500, "state": "disabled", "auto_release": false}` and nothing else."""
    return (
        claim.get("state") == "disabled"
        and claim.get("priority", MQTT_CLAIM_PRIORITY) == MQTT_CLAIM_PRIORITY
        and not claim.get("auto_release", False)
        and set(claim) <= {"state", "priority", "auto_release"}
    )
