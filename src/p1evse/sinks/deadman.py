"""The dead-man's switch: if p1evse itself dies (killed, out of memory, its machine gone),
the broker pauses the charger, as the stale guard would have.

A second, light MQTT connection (`<client_id>-deadman`) carries a last will: the pause
claim on `<base>/claim/set` (QoS 1, not retained). The broker publishes it when that
connection ends without saying goodbye: at once when the process dies and the kernel
closes its socket, or after 1.5 x `deadman_keepalive` without a keepalive when the
process hangs or its machine goes (mosquitto checks keepalives every few seconds, so
allow a little more). A clean shutdown says goodbye (DISCONNECT), and the will is
dropped. While OpenEVSE reports normal mode the switch is disarmed (connected without a
will): a deliberate charge is never paused, by p1evse alive or dead.

Arming writes a retained marker (`deadman_topic`, JSON with this run's id); a clean
shutdown removes it, or, when the run stops while its meter is silent, leaves one that
says the charger stays paused (the feed keeps its pause then: released, the charger
would charge on at its last rate, fed by no one). A run that finds another run's armed
marker knows that run died with its will armed; one that finds a paused marker, that
the pause is in force; a run whose armed connection drops (a network cut between it and
the broker looks like a death to the broker) knows its own will may have fired. Once its
readings are fresh, it looks at OpenEVSE's retained `<base>/claim` (the MQTT claim
slot's properties) and, if that is the pause the will sets (state disabled, nothing
else), releases it, once. A claim with anything else in it is someone else's and is
left alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import secrets
from typing import Any

from p1evse.counts import Count
from p1evse.errors import InputRejected
from p1evse.inputs import load_json
from p1evse.model import GridPower, StaleEntered, StaleLeft
from p1evse.mqtt import Broker, BrokerStats, MqttPort, MqttSettings, Retained, Will
from p1evse.sinks.charger import ChargerState, OpenevseSettings
from p1evse.sinks.openevse_mqtt import PAUSE_CLAIM, RELEASE, OpenEvseMqttSink, is_pause_claim

log = logging.getLogger(__name__)

MAX_MARKER_BYTES = 256
# A will's pause is looked for this long after it may have fired, in keepalives: a will
# may come late (a dead connection outlives its process by 1.5 keepalives). And for at
# least `stale_after` and a little: readings fresh later than that come after this run's
# own stale guard has taken the pause over (and releases it itself).
INHERIT_KEEPALIVES = 3
INHERIT_MORE_S = 30.0


class DeadmanSwitch:
    """A sink of the MQTT transport with a connection of its own (see the module)."""

    def __init__(
        self,
        openevse: OpenevseSettings,
        mqtt: MqttSettings,
        broker: MqttPort,
        charger: ChargerState,
        feed: OpenEvseMqttSink,
        stale_after: float,
    ) -> None:
        self._mqtt = mqtt
        self._inherit_s = (
            max(INHERIT_KEEPALIVES * openevse.deadman_keepalive, stale_after) + INHERIT_MORE_S
        )
        self._client_id = f"{mqtt.client_id}-deadman"
        self._keepalive = openevse.deadman_keepalive
        self._marker_topic = openevse.deadman_topic
        self._claim_topic = openevse.claim_topic
        self._broker = broker
        self._charger = charger
        self._feed = feed
        self.run_id = secrets.token_hex(8)
        self._connection: Broker | None = None
        self._stats = BrokerStats()  # of all its connections, one after another
        self._armed: bool | None = None  # as the current connection is: with a will or not
        self._rearm = asyncio.Event()
        self._fresh = False  # the readings are fresh: values are going out
        self.will_may_have_fired = False  # a pause by a will may be in force
        self._pause_left = False  # ... or one a run before said it left
        self._will_window_ends = 0.0
        self._charger_claim: dict[str, Any] | None = None  # OpenEVSE's MQTT claim
        feed.slot_listeners.append(self._on_charger_claim)  # to see a will's pause in force
        feed.keeps_pause = True  # this switch's marker tells the next run of it

    # -- Sink ------------------------------------------------------------------------

    def grid_power(self, value: GridPower) -> None:
        if not value.failsafe:
            self._fresh = True
            self._release_will_pause()
        if self._armed is not None and self._armed != self._feed.pause.charger_pausable():
            self._rearm.set()  # the charger's mode changed: arm or disarm

    def stale_entered(self, event: StaleEntered) -> None:
        self._fresh = False

    def stale_left(self, event: StaleLeft) -> None:
        """Fresh readings are known once a value goes out (grid_power)."""

    def counts(self) -> list[Count]:
        """How its connections fared: a drop while armed may have fired the will."""
        return self._stats.counts(self._mqtt.endpoint, prefix="deadman_")

    async def run(self) -> None:
        """Keep the switch's connection up, armed or not as the charger's mode wants."""
        while True:
            armed = self._feed.pause.charger_pausable()
            connection = self._connect(armed)
            task = asyncio.create_task(connection.run(), name="deadman-mqtt")
            try:
                await self._rearm.wait()
                self._rearm.clear()
                await connection.close()  # the goodbye drops the will, if it had one
            finally:
                task.cancel()

    async def close(self) -> None:
        """Disarm for good: the goodbye drops the will, and the marker goes, or says
        that this run left the charger paused (the feed keeps a pause at close while
        the meter is silent): the next run releases it once its readings are fresh."""
        connection = self._connection
        if connection is not None:
            marker = ""
            # its own pause, or one a run before left that this run has not released
            if self._feed.claim_sent or (self.will_may_have_fired and self._pause_left):
                marker = json.dumps({"run": self.run_id, "paused": True}, separators=(",", ":"))
            await connection.close(last=[Retained(self._marker_topic, marker)])
            log.info("dead-man's switch disarmed")

    # -- the switch's connection -----------------------------------------------------

    def _connect(self, armed: bool) -> Broker:
        will = Will(self._claim_topic, PAUSE_CLAIM, qos=1, retain=False) if armed else None
        connection = Broker(
            self._mqtt,
            client_id=self._client_id,
            keepalive=self._keepalive,
            announce=False,
            will=will,
            quiet=True,
            stats=self._stats,
        )
        # The marker of the run before comes first (retained, right after subscribing),
        # then this run's own: the broker takes the two packets in order.
        connection.subscribe(self._marker_topic, self._on_marker)
        connects = itertools.count(1)  # this connection's, from its first
        connection.on_connected(lambda: self._connected(connection, armed, next(connects) > 1))
        self._connection = connection
        self._armed = armed
        return connection

    def _connected(self, connection: Broker, armed: bool, again: bool) -> None:
        """`again`: this connection was up before, and lost the broker."""
        marker = json.dumps({"run": self.run_id, "armed": armed}, separators=(",", ":"))
        connection.publish(self._marker_topic, marker, qos=1, retain=True)
        if not armed:
            return
        if again:
            self._expect_will_pause(
                "the dead-man's switch lost the broker while armed: the broker may have "
                "paused the charger with its will"
            )
        log.info(
            "dead-man's switch armed: if p1evse dies, the broker pauses the charger within %g s",
            1.5 * self._keepalive,
        )

    def _on_marker(self, payload: bytes | bytearray) -> None:
        try:
            marker = load_json(payload, MAX_MARKER_BYTES) if payload else None
        except InputRejected:
            return
        if not isinstance(marker, dict) or marker.get("run") in (None, self.run_id):
            return
        if marker.get("paused") is True:
            self._expect_will_pause(
                "the last run of p1evse stopped while its meter was silent and left the "
                "charger paused",
                left=True,
            )
        elif marker.get("armed") is True:
            self._expect_will_pause(
                "the last run of p1evse ended without disarming its dead-man's switch: "
                "the charger may be paused by its will"
            )

    # -- the pause a will may have left ----------------------------------------------

    def _expect_will_pause(self, why: str, *, left: bool = False) -> None:
        """`left`: a run before says it left the pause; it is released whenever this
        run's readings are fresh (its own stale guard may never take it over: a charger
        in normal mode is not paused), and said on again if this run stops first."""
        if self.will_may_have_fired:
            return
        self.will_may_have_fired = True
        self._pause_left = left
        window = math.inf if left else self._inherit_s
        self._will_window_ends = asyncio.get_running_loop().time() + window
        log.warning("%s; p1evse releases that pause once its readings are fresh", why)

    def _on_charger_claim(self, claim: dict[str, Any] | None) -> None:
        self._charger_claim = claim
        self._release_will_pause()

    def _release_will_pause(self) -> None:
        if not (self.will_may_have_fired and self._fresh) or self._charger_claim is None:
            return
        claim = self._charger_claim
        if asyncio.get_running_loop().time() > self._will_window_ends:
            self.will_may_have_fired = False
            return
        if claim.get("state") in (None, "null"):
            return  # nothing in the slot (yet: the will may still be on its way)
        if not is_pause_claim(claim) or self._feed.claim_sent:
            self.will_may_have_fired = False
            log.info("not releasing OpenEVSE's MQTT claim %s: it is not the will's pause", claim)
            return
        if self._broker.publish(self._claim_topic, RELEASE, qos=1):
            self.will_may_have_fired = False
            left_by = (
                "a run stopped while stale" if self._pause_left else "the dead-man's switch's will"
            )
            log.warning("released the pause left by %s: %s", left_by, claim)
