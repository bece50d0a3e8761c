"""Which process of a fleet owns a site.

Static shards (`fleet.shard: I/N`) split the site ids by a hash. Live membership
(`fleet.membership: true`) needs no numbering: each process announces itself, retained,
on `<fleet.topic>/members/<client id>` ("online", and "offline" as its last will), and a
site belongs to the live member with the highest rendezvous weight for it. When a member
goes, only its sites move, spread over the others; when one joins, it takes about 1/N of
the sites, from every other member alike.

A will is not always said: a member that dies while the broker is down, or a broker
restored from its store, leaves an "online" behind for no one. So each member says
"online" again every `fleet.member_heartbeat` seconds, and one not heard for
`MISSED_BEATS` of them is taken as gone. What "not heard" means is measured against this
process's own heartbeat coming back: a process that was frozen, or whose connection
stalled, has heard no one, and expires no one for it.
"""

from __future__ import annotations

import hashlib

from p1evse.fleet.settings import Shard

MISSED_BEATS = 3  # heartbeats a member may miss before it is taken as gone


def rendezvous_weight(member: str, site: str) -> int:
    """The weight of `member` for `site`: the same in every process and every run."""
    digest = hashlib.blake2b(
        f"{member}\x00{site}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")


class Members:
    """The live members as this process knows them; it is one itself, always."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.live: set[str] = {me}
        self.heard: dict[str, float] = {}  # another live member -> when it last said so

    def owner(self, site: str) -> str:
        return max(self.live, key=lambda member: (rendezvous_weight(member, site), member))

    def owns(self, site: str) -> bool:
        return len(self.live) == 1 or self.owner(site) == self.me

    def update(self, member: str, online: bool, now: float = 0.0) -> bool:
        """A member said at `now` it is online or gone; whether the set of live members
        changed. What is said of this process itself changes nothing (an old will,
        retained)."""
        if member == self.me:
            return False
        if online:
            self.heard[member] = now
        else:
            self.heard.pop(member, None)
        if online == (member in self.live):
            return False
        if online:
            self.live.add(member)
        else:
            self.live.discard(member)
        return True

    def expire(self, now: float, heartbeat: float) -> list[str]:
        """This process's own heartbeat came back at `now`: the members not heard for
        `MISSED_BEATS` heartbeats before it are gone (returned)."""
        gone = [m for m, heard in self.heard.items() if now - heard > MISSED_BEATS * heartbeat]
        for member in gone:
            del self.heard[member]
            self.live.discard(member)
        return gone

    def forget(self) -> None:
        """The connection is lost: who is live is learnt anew from the broker."""
        self.live = {self.me}
        self.heard.clear()


class Owners:
    """This process's share of the sites: all, a static shard, or by live membership."""

    def __init__(self, shard: Shard | None, members: Members | None) -> None:
        self.shard = shard
        self.members = members

    def owns(self, site: str) -> bool:
        if self.members is not None:
            return self.members.owns(site)
        return self.shard is None or self.shard.owns(site)
