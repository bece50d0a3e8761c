"""Who else feeds a site's charger, when the broker deals the meters among the fleet's
processes (a shared subscription: `fleet.share_group`).

The broker moves a meter to another process when the group's members change, and tells
nobody. The former owner's site then hears no more readings, and its stale guard would
pause a charger that the new owner feeds. So each such site listens to its charger's
grid_ie topic, where every process that feeds the charger publishes. A value this
process did not send is another's:

- one since the site's last reading, and the site is let go when its stale guard comes,
  instead of pausing;
- a second one with still no reading in between, and the site is let go at once;
- a reading of the site's own between two of them: the broker deals this meter's
  readings to two processes at once (round robin, not a sticky strategy). Told.

Only what p1evse itself sends counts as another process's value: whole watts. Anything
else on the topic (garbage, an empty message) is no feed of ours and changes nothing.
A value is known as this process's own by its text: the last few sent wait for their
echo. An echo that never comes (a lost QoS 0 message) keeps its text there until newer
ones push it out; another's value of the very same text is then taken for the echo,
which delays the verdict by one value and never makes a wrong one.
"""

from __future__ import annotations

import re
from collections import deque
from enum import Enum

SENT_KEPT = 4  # own values waiting for their echo
# what a p1evse process sends on a charger's feed: whole watts, signed
FEED_VALUE = re.compile(rb"-?[0-9]{1,9}")


class Heard(Enum):
    OWN = "own"  # the echo of a value this process sent
    OTHER = "other"  # another process's, the first since this site's last reading
    MOVED = "moved"  # another's again, and no reading here since: the meter is dealt to it
    BOTH = "both"  # another's, after a reading here: the meter's readings go to both
    NOT_A_VALUE = "not a value"  # nothing p1evse sends: no process's feed


class FeedWatch:
    """One site's charger feed as heard back from the broker."""

    __slots__ = ("_other_since", "_sent", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic  # the charger's grid_ie
        self._sent: deque[bytes] = deque(maxlen=SENT_KEPT)
        # the site's last reading when another's value was heard last
        self._other_since: float | None = None

    def sent(self, payload: str) -> None:
        self._sent.append(payload.encode())

    def heard(self, payload: bytes | bytearray, last_reading: float) -> Heard:
        """A value on the feed's topic; `last_reading`: when the site's last valid
        reading came."""
        value = bytes(payload)
        if value in self._sent:
            self._sent.remove(value)
            return Heard.OWN
        if FEED_VALUE.fullmatch(value) is None:
            return Heard.NOT_A_VALUE
        before, self._other_since = self._other_since, last_reading
        if before is None:
            return Heard.OTHER
        return Heard.MOVED if before == last_reading else Heard.BOTH

    def fed_by_another(self, last_reading: float) -> bool:
        """Whether another process fed the charger since the site's last reading."""
        return self._other_since == last_reading
