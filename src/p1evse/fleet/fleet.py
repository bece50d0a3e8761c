"""The fleet's runtime: a Site per site id, made on the site's first message, routed by
a dict keyed on its topics, let go when it has been idle for `evict_after` or when
another process owns it now.

One pattern subscription per source topic brings every site's messages. A message whose
topic has a route goes straight to its site (the broker's dict lookup); any other comes
here with its topic: its site id is checked, this process asked whether it owns the site
(`members.Owners`), `max_sites` whether there is room, and the site is made. A site of
another process gets a route that only counts, so its messages cost a lookup too.

A site is made on its first message, which may be no reading at all: its stale guard
waits for its first valid reading, so a charger this process never fed is never paused.

Pauses outlive whoever made them. While the fleet holds a pause claim on a charger, a
marker is retained on `<fleet.topic>/paused/<site>`; whoever serves the site next (this
process when an idle site is back or after a restart, a survivor when a member died, a
member that joined) takes the claim over, and the site's first fresh reading releases
it. So a fleet never releases on the way out: a charger whose meter went silent stays
paused until its readings are back, whoever is serving it then.

Nothing is decided before this process has seen its own announcement come back from the
broker: the retained members and markers come before it, so by then it knows who else
serves and which chargers are paused. A member that is gone hands nothing over, so each
member keeps when it last heard the meters of the others' sites: the new owner makes
them at once, their stale guards counting from the last message heard, so a meter silent
at the handover still has its charger paused (made on its next message, it never would
be), at once if it has been silent for longer than `stale_after` and nobody paused it
(its owner, as this process saw the members, was one that never was). A member that lets a site
go to one that joined says on `<fleet.topic>/handover/<site>` how long ago its meter
last gave a valid reading (when it ever did, and the site is not stale), and the new
owner makes the site at once, its stale guard running on. A member learns the
members anew on every connection (who died while it was away said nothing it could
hear), and says "online" again at once when anyone else says otherwise on its topic: the
others would take its sites while it still feeds them.

With a shared subscription (`fleet.share_group`) the broker deals the meters among the
processes, and a site is this process's while its meter's readings come here. The
broker moves meters without a word, so each site listens to its charger's feed
(`dealt.FeedWatch`) and is let go, not paused, once another process feeds it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from p1evse.counts import Count
from p1evse.errors import ConfigError, InputRejected
from p1evse.fleet.dealt import FeedWatch, Heard
from p1evse.fleet.members import MISSED_BEATS, Members, Owners
from p1evse.fleet.port import SitePort
from p1evse.fleet.records import SiteRecord, Totals
from p1evse.fleet.rows import site_row
from p1evse.fleet.settings import FleetSettings
from p1evse.fleet.site_list import SiteList
from p1evse.fleet.state_topics import StateTopics
from p1evse.inputs import parse_number
from p1evse.mqtt import ONLINE
from p1evse.ratelimit import RateLimiter
from p1evse.settings import SITE_ID, SITE_ID_RULE, SiteTemplate, site_capture
from p1evse.site import Ports, Role, Site, SiteSettings, build_site

if TYPE_CHECKING:
    from p1evse.clock import Clock, Timer
    from p1evse.model import Event
    from p1evse.mqtt import Broker
    from p1evse.sources import TopicSource

log = logging.getLogger(__name__)

# what a fleet's site is built for: everything but the status model (the fleet keeps a
# record of each site, and publishes its state topic) and Home Assistant's discovery, and
# a stale guard that waits for the first valid reading
SITE_ROLE = Role(guard_from_start=False, discovery=False, state_topic=False)
SWEEP_PERIOD_S = 60.0  # at most this long between looks for idle sites, and summaries
FREEZE_AFTER_S = 1.0  # sites made this long ago and none since: frozen (see _freeze)
FREEZE_EVERY = 500  # or this many made since the last freeze
LOG_PERIOD_S = 60.0  # refused sites: a log line per kind at most this often
# routes kept for topics of sites another process owns, per site this one may have: a
# meter's topics and its charger's reports
IGNORED_ROUTES_PER_SITE = 16
# pause markers known, per site this one may have (anyone may publish markers)
MARKERS_PER_SITE = 10
PAUSED = "1"  # a pause marker's payload; an empty retained message removes it
MAX_MEMBERS = 1000  # live members taken (anyone who may publish there could add more)
REASSERT_EVERY_S = 1.0  # at most this often "online" again when someone says otherwise
# sites another process feeds now are let go together, this long after the first: a
# member joining or leaving a shared group moves many, as their new owner's values come
LET_GO_AFTER_S = 1.0


@dataclass
class FleetCounters:
    created: int = 0
    evicted: int = 0  # idle sites let go
    moved: int = 0  # sites let go because another process owns them now
    refused_id: int = 0  # a topic level that is no site id
    refused_full: int = 0  # max_sites reached
    not_owned: int = 0  # messages of sites another process owns, or before it knew
    fed_by_both: int = 0  # another's value on a site's feed after a reading of its own
    feed_refused: int = 0  # messages on a site's feed that are no value p1evse sends
    taken_over: int = 0  # sites made when a member went, or at a member's handover
    handovers_refused: int = 0  # handover messages that are no age in seconds
    markers_refused: int = 0  # pause markers beyond the bound

    def counts(self) -> list[Count]:
        return [
            Count("fleet_sites_created", "Sites made on their first message", self.created),
            Count("fleet_sites_evicted", "Idle sites let go", self.evicted),
            Count("fleet_sites_moved", "Sites let go to another process", self.moved),
            Count(
                "fleet_messages_refused",
                "Messages of sites not served: no valid site id, or fleet.max_sites reached",
                self.refused_id + self.refused_full,
            ),
            Count(
                "fleet_messages_not_owned",
                "Messages of sites another process serves (their meters', chargers' reports "
                "and feeds), or before this process knew the others",
                self.not_owned,
            ),
            Count(
                "fleet_feeds_shared",
                "Values of another process's on the feed of a site whose readings still "
                "come here too: a broker that deals a meter to two processes",
                self.fed_by_both,
            ),
            Count(
                "fleet_sites_taken_over",
                "Sites made before their next message: their member went while their "
                "meters spoke lately, or handed them over on joining",
                self.taken_over,
            ),
            Count(
                "fleet_handovers_refused",
                "Messages on the fleet's handover topics that are no age in seconds",
                self.handovers_refused,
            ),
            Count(
                "fleet_pause_markers_refused",
                "Pause markers beyond 10 per site of fleet.max_sites, not taken: those "
                "chargers are not released by this process",
                self.markers_refused,
            ),
            Count(
                "fleet_feed_messages_refused",
                "Messages on a site's charger feed that are no value p1evse sends (whole "
                "watts): not taken for another process's",
                self.feed_refused,
            ),
        ]


class Fleet:
    def __init__(
        self,
        settings: SiteSettings,
        fleet: FleetSettings,
        broker: Broker,
        clock: Clock,
        announced: str,
        observers: list[Callable[[Event], None]] | None = None,
        holds: Callable[[float], float] | None = None,
    ) -> None:
        """`settings` is every site's, with `+` and `{site}` where the site id goes;
        `announced`: the topic of this process's retained "online" (its availability,
        or its member topic); `observers` see every event of every site; `holds`: how
        long the loop was held in all up to a time (`LoopWatch.held`)."""
        problems = settings.site_id_problems()
        if problems or not settings.is_fleet():
            raise ConfigError([f"{key} = {problem}" for key, problem in problems] or ["no fleet"])
        self._template = SiteTemplate(settings)
        self.settings = fleet
        self._broker = broker
        self._clock = clock
        self._stale_after = settings.publish.stale_after
        self._announced_on = announced
        self._observers = observers
        self._holds = holds
        self.sites: dict[str, Site] = {}
        self.records: dict[str, SiteRecord] = {}  # what the page shows of each site
        self.totals = Totals()
        self._ports: dict[str, SitePort] = {}
        self.members = Members(settings.mqtt.client_id) if fleet.membership else None
        self._owners = Owners(fleet.shard, self.members)
        self.paused: set[str] = set()  # the sites whose pause markers are retained
        # the markers the broker brought since this connection began, until this
        # process's own "online" comes back behind them (None: not connected or done)
        self._markers_brought: set[str] | None = None
        # topics of sites another process owns, routed to count their messages
        self._ignored: set[str] = set()
        # sites of other members, and when a message of their meters last came here
        self._others_heard: dict[str, float] = {}
        self._shared: set[str] = set()  # patterns that bring topics of every site
        # the broker deals the meters among the processes (a shared subscription)
        self._dealt = fleet.share_group is not None
        self._leaving: dict[str, None] = {}  # sites another process feeds now, let go soon
        # the last site whose meter the broker dealt to this and another process at once,
        # and when (for /healthz)
        self.fed_by_both: tuple[str, float] | None = None
        self._letting_go: Timer | None = None
        self._collect_due = False  # sites let go since the last full collection
        self.ready = False
        self._told_connected = False  # the sites know the connection is up
        self.counters = FleetCounters()
        self._log = RateLimiter(LOG_PERIOD_S, clock.time)
        self._sweep: Timer | None = None
        self._freezing: Timer | None = None
        self._heartbeat: Timer | None = None
        self._reasserted_at = float("-inf")
        self._reasserting: Timer | None = None
        self._closed = False  # its own "offline" on the way out is no one else's word
        self._unfrozen = 0  # sites made since the last freeze
        self._states = (
            StateTopics(broker, clock, self._state_of)
            if settings.mqtt.state_topic is not None
            else None
        )
        self._summarized = (0, 0, 0, 0)  # sites, created, evicted, moved at the last summary
        broker.subscribe(announced, self._announced, retained=False)
        if self.members is not None:
            broker.subscribe_pattern(fleet.member_topic("+"), self._member_said)
            broker.subscribe_pattern(fleet.handover_topic("+"), self._handed_over, retained=False)
        broker.subscribe_pattern(fleet.paused_topic("+"), self._marker)
        patterns = [
            (pattern, level)
            for pattern in settings.source.subscriptions()
            if (level := site_capture(pattern)) is not None  # site_id_problems: all have one
        ]
        self._list = (
            SiteList(fleet.sites, [pattern for pattern, _ in patterns], broker, self._arrived)
            if fleet.sites
            else None
        )
        if self._list is None:
            for pattern, level in patterns:
                broker.subscribe_pattern(
                    pattern,
                    partial(self._unrouted, level),
                    retained=False,
                    share_group=fleet.share_group,
                )
        broker.on_connected(self._connected)
        broker.on_disconnected(self._disconnected)
        broker.on_problem(self._problem)

    def work(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """Nothing of its own to run: the broker connection carries every site."""
        return {}

    def start(self) -> None:
        self._schedule_sweep()
        if self.members is not None:
            self._schedule_heartbeat()

    async def close(self) -> None:
        """Stop every site; what their chargers hold stays (see the module's text)."""
        self._closed = True
        self.ready = False  # nothing is made, taken over or handed over on the way out
        timers = (self._sweep, self._freezing, self._letting_go, self._heartbeat, self._reasserting)
        for timer in timers:
            if timer is not None:
                timer.cancel()
        self._sweep = self._freezing = self._letting_go = self._heartbeat = None
        self._reasserting = None
        if self._states is not None:
            self._states.close()
        for site in self.sites.values():
            site.leave()

    # -- what the fleet's own topics say ----------------------------------------------

    def _announced(self, payload: bytes | bytearray) -> None:
        """What the broker brings on this process's own topic: its "online" back (the
        first since connecting makes it ready; any later one is its heartbeat), or
        someone else's word, answered with "online" again."""
        if self._closed:
            return
        if bytes(payload) != ONLINE.encode():
            if self.ready:
                self._reassert(payload)
            return
        if self._markers_brought is not None:
            brought, self._markers_brought = self._markers_brought, None
            self._mark_again(brought)
        members = self.members
        if not self.ready:
            self.ready = True
            if members is not None:
                self._reassign()
                self._tell_connected()
            elif self._list is not None:
                self._list.sync(self._owners.owns)
        elif members is not None:
            gone = members.expire(self._clock.time(), self.settings.member_heartbeat)
            if gone:
                log.warning(
                    "fleet: %s not heard for %d heartbeats (fleet.member_heartbeat = %g s), "
                    "taken as gone",
                    ", ".join(gone[:10]) + (", …" if len(gone) > 10 else ""),
                    MISSED_BEATS,
                    self.settings.member_heartbeat,
                )
                self._reassign()

    def _reassert(self, payload: bytes | bytearray) -> None:
        if self._closed or not self._broker.connected:
            return  # a new connection says "online" anyway
        more = self._log.note("reassert")
        if more is not None:
            log.warning(
                'fleet: %r was said on this process\'s own topic %s; it says "online" '
                "again (its own will, from a broker shutting down? another process "
                "with client id %s? someone clearing the topic?)%s",
                bytes(payload[:40]),
                self._announced_on,
                self._broker.client_id,
                more,
            )
        due = self._reasserted_at + REASSERT_EVERY_S
        if self._clock.time() >= due:
            self._say_online()
        elif self._reasserting is None:  # said a moment ago: once more, then
            self._reasserting = self._clock.call_at(due, self._say_online)

    def _say_online(self) -> None:
        self._reasserting = None
        self._reasserted_at = self._clock.time()
        if not self._closed and self._broker.connected:
            self._broker.publish(self._announced_on, ONLINE, qos=1, retain=True)

    def _schedule_heartbeat(self) -> None:
        when = self._clock.time() + self.settings.member_heartbeat
        self._heartbeat = self._clock.call_at(when, self._beat)

    def _beat(self) -> None:
        if self._broker.connected:
            self._broker.publish(self._announced_on, ONLINE, qos=1, retain=True)
        self._schedule_heartbeat()

    def _member_said(self, topic: str, payload: bytes | bytearray) -> None:
        members = self.members
        assert members is not None
        member = topic.rpartition("/")[2]
        online = bytes(payload) == ONLINE.encode()
        full = member not in members.live and len(members.live) >= MAX_MEMBERS
        if online and (SITE_ID.fullmatch(member) is None or full):
            more = self._log.note("member")
            if more is not None:
                log.warning(
                    "fleet: %r is not taken as a member (a member is named like a site id, "
                    "and there are at most %d)%s",
                    member[:80],
                    MAX_MEMBERS,
                    more,
                )
            return
        # before this process is ready it serves nothing: the members are only noted
        if members.update(member, online, self._clock.time()) and self.ready:
            self._reassign()

    def _mark_again(self, brought: set[str]) -> None:
        """Publish again the markers of the pauses this process holds that the broker
        did not bring on this connection: a broker restarted without persistence lost
        them, and whoever served such a site next would never release its charger."""
        lost = [
            site_id
            for site_id, site in self.sites.items()
            if site.holds_pause and site_id not in brought
        ]
        for site_id in lost:
            self._pause_held(site_id, True)
        if lost:
            log.warning(
                "fleet: the broker had lost the pause markers of %s (restarted without "
                "persistence?); published again: %s",
                sites(len(lost)),
                ", ".join(lost[:10]) + (", …" if len(lost) > 10 else ""),
            )

    def _marker(self, topic: str, payload: bytes | bytearray) -> None:
        site_id = topic.rpartition("/")[2]
        self._note_marker(site_id, payload)
        if self._markers_brought is not None and site_id in self.paused:
            self._markers_brought.add(site_id)

    def _note_marker(self, site_id: str, payload: bytes | bytearray) -> None:
        if not payload:
            self.paused.discard(site_id)
        elif len(self.paused) < MARKERS_PER_SITE * self.settings.max_sites:
            self.paused.add(site_id)
        elif site_id not in self.paused:
            # such a site's charger, paused, is not released when its meter is back
            self.counters.markers_refused += 1
            more = self._log.note("markers")
            if more is not None:
                log.error(
                    "fleet: more than %d pause markers under %s: site %s's is not taken, "
                    "and its charger is not released by this process; who else writes "
                    "there?%s",
                    MARKERS_PER_SITE * self.settings.max_sites,
                    self.settings.paused_topic("+"),
                    site_id,
                    more,
                )

    def _reassign(self) -> None:
        """The members changed: let go of the sites another owns now, take over those
        of members gone, and forget which topics were another's."""
        moved = [site_id for site_id in self.sites if not self._owners.owns(site_id)]
        now = self._clock.time()
        for site_id in moved:
            pipeline = self.sites[site_id].pipeline
            if pipeline.ever_valid and not pipeline.stale:
                age = max(0.0, now - pipeline.last_valid_at)
                self._broker.publish(self.settings.handover_topic(site_id), f"{age:.3f}", qos=1)
            self._drop(site_id)
        self.counters.moved += len(moved)
        if moved:
            self._collect()
        # before any site is made: their routes are on these very topics
        self._broker.unroute(list(self._ignored))
        self._ignored.clear()
        taken = self._take_over()
        if self._list is not None:
            self._list.sync(self._owners.owns)
        members = self.members
        assert members is not None
        log.info(
            "fleet: serving as %s with %s; %d sites moved to others, %d taken over",
            members.me,
            _others(members),
            len(moved),
            taken,
        )

    def _take_over(self) -> int:
        """Make the sites now this process's that were heard of as another's, each
        stale guard counting from its meter's last message (the module's text): one
        silent for longer than `stale_after` is paused at once, for its owner as this
        process saw the members may have been one that never was (a stale "online")."""
        heard = self._others_heard
        owns = self._owners.owns
        self._others_heard = {site_id: at for site_id, at in heard.items() if not owns(site_id)}
        taken = [
            (site_id, at)
            for site_id, at in heard.items()
            # a paused one is the charger's until its meter is back
            if owns(site_id) and site_id not in self.sites and site_id not in self.paused
        ]
        made = taken[: max(0, self.settings.max_sites - len(self.sites))]
        for site_id, at in made:
            self._add(site_id, fed_at=at)
        self.counters.taken_over += len(made)
        return len(made)

    def _handed_over(self, topic: str, payload: bytes | bytearray) -> None:
        """A member let a site go that this process owns now (one joined): made at
        once, its stale guard counting from its meter's last valid reading."""
        site_id = topic.rpartition("/")[2]
        if not self.ready or site_id in self.sites or SITE_ID.fullmatch(site_id) is None:
            return
        age = _seconds(payload)
        if age is None:
            self.counters.handovers_refused += 1
            more = self._log.note("handover")
            if more is not None:
                log.warning(
                    "fleet: %r on %s is no age in seconds; site %s is made on its next message%s",
                    bytes(payload[:40]),
                    topic[:200],
                    site_id,
                    more,
                )
            return
        if age >= self._stale_after:  # its former owner paused it (a marker)
            return
        fed_at = self._clock.time() - age
        if not self._owners.owns(site_id):
            # another's as this process sees the members: this one's, should that change
            self._heard_of(site_id, fed_at)
        elif site_id not in self.paused and len(self.sites) < self.settings.max_sites:
            self._add(site_id, fed_at=fed_at)
            self.counters.taken_over += 1

    # -- the first message of a site ------------------------------------------------

    def _unrouted(self, level: int, topic: str, payload: bytes | bytearray) -> None:
        site_id = topic.split("/")[level]
        if SITE_ID.fullmatch(site_id) is None:
            self.counters.refused_id += 1
            more = self._log.note("site id")
            if more is not None:
                log.warning(
                    "a message on %r: %r is no site id (%s)%s",
                    topic[:200],
                    site_id[:80],
                    SITE_ID_RULE,
                    more,
                )
            return
        self._arrived(site_id, topic, payload)

    def _arrived(self, site_id: str, topic: str, payload: bytes | bytearray) -> None:
        """The first message of a site not made here yet: made, if it is this
        process's and there is room."""
        if not self.ready:
            self._not_owned(payload)
            return
        if not self._owners.owns(site_id):
            self._others_message(site_id, payload)
            if self._list is None:  # a listed site's topic is a subscription of the list's
                self._ignore(topic, partial(self._others_message, site_id))
            return
        if len(self.sites) >= self.settings.max_sites:
            self.counters.refused_full += 1
            more = self._log.note("full")
            if more is not None:
                log.warning(
                    "fleet.max_sites = %d reached: site %s is not served%s",
                    self.settings.max_sites,
                    site_id,
                    more,
                )
            return
        port = self._add(site_id)
        handler = (self._list.routes if self._list is not None else port.routes).get(topic)
        if handler is not None:
            handler(payload)

    def _not_owned(self, payload: bytes | bytearray) -> None:
        self.counters.not_owned += 1

    def _others_message(self, site_id: str, payload: bytes | bytearray) -> None:
        """A message of the meter of a site another member serves: counted, and when
        it came kept, should that member go."""
        self.counters.not_owned += 1
        if self.members is not None:
            self._heard_of(site_id, self._clock.time())

    def _heard_of(self, site_id: str, at: float) -> None:
        heard = self._others_heard
        if site_id in heard:
            heard[site_id] = max(heard[site_id], at)
        elif len(heard) < self.settings.max_sites:
            heard[site_id] = at

    def _ignore(
        self, topic: str, handler: Callable[[bytes | bytearray], None] | None = None
    ) -> None:
        """Messages on `topic` are another process's: a route that counts them (or
        `handler`)."""
        if len(self._ignored) < IGNORED_ROUTES_PER_SITE * self.settings.max_sites:
            self._ignored.add(topic)
            self._broker.route(topic, handler or self._not_owned, retained=False)

    def _share(self, site_id: str, topic: str) -> bool:
        """Bring a site's `topic` with one pattern for all sites, when the site id is
        one whole level of it: `openevse/h7/amp` comes with `openevse/+/amp`."""
        levels = topic.split("/")
        if levels.count(site_id) != 1:
            return False
        level = levels.index(site_id)
        levels[level] = "+"
        pattern = "/".join(levels)
        if pattern not in self._shared:
            self._shared.add(pattern)
            self._broker.subscribe_pattern(pattern, partial(self._unrouted_report, level))
        self._ignored.discard(topic)  # the site's now: never unrouted as another's
        return True

    def _unrouted_report(self, level: int, topic: str, payload: bytes | bytearray) -> None:
        """A message on a shared pattern for a site not made here: another process's
        (counted, and routed to be counted from now on), or one of this process's
        whose meter has not spoken yet (left: its charger reports again)."""
        site_id = topic.split("/")[level]
        if (
            self.ready
            and SITE_ID.fullmatch(site_id)
            # dealt by the broker: a site is another's until its readings come here
            and (self._dealt or not self._owners.owns(site_id))
        ):
            self._not_owned(payload)
            self._ignore(topic)

    def _add(self, site_id: str, fed_at: float | None = None) -> SitePort:
        """Make the site; `fed_at`: a member now gone fed its charger from a message
        of then (`Pipeline.fed_elsewhere`)."""
        settings = self._template.fill(site_id)
        port = SitePort(self._broker, partial(self._share, site_id))
        record = SiteRecord(self.totals)
        observers = [record.observe, *(self._observers or [])]
        if self._states is not None:
            observers.append(partial(self._changed, site_id))
        site = build_site(
            settings,
            Ports(self._clock, port, self._holds),
            SITE_ROLE,
            name=site_id,
            observers=observers,
        )
        source = cast("TopicSource", site.source)  # site_id_problems: the source is MQTT's
        for topic, handler in source.handlers(site.bridge).items():
            if self._list is not None:
                self._list.routes[topic] = handler
            else:
                port.route(topic, handler)
                self._ignored.discard(topic)  # the site's now: never unrouted as another's
        if self._dealt:
            self._watch(site_id, site, port)
        site.on_pause_held(record.pause_held)
        if site_id in self.paused:
            site.adopt_pause(self._clock.time())
            record.set_stale(True)
        elif fed_at is not None:
            site.pipeline.fed_elsewhere(fed_at)
        site.on_pause_held(partial(self._pause_held, site_id))
        if self._states is not None:
            site.on_pause_held(partial(self._changed, site_id))
        self.sites[site_id] = site
        self.records[site_id] = record
        self._ports[site_id] = port
        self.counters.created += 1
        if self._told_connected:
            _tell(port.connected_listeners)
        site.start()
        log.debug("site %s: first message; %d sites", site_id, len(self.sites))
        self._unfrozen += 1
        if self._unfrozen >= FREEZE_EVERY:  # a burst of new sites: the walks stay short
            self._freeze()
        elif self._freezing is None:
            self._freezing = self._clock.call_at(self._clock.time() + FREEZE_AFTER_S, self._freeze)
        return port

    # -- a site the broker deals to one process of many ------------------------------

    def _watch(self, site_id: str, site: Site, port: SitePort) -> None:
        """Hear the site's charger feed back, and let the site go, not pause it, once
        another process feeds it (the module's text)."""
        watch = port.watch = FeedWatch(site.settings.openevse.grid_ie_topic)
        port.subscribe(watch.topic, partial(self._fed, site_id, site, watch), retained=False)
        site.bridge.stale_gate = partial(self._stale_or_moved, site_id, site, watch)

    def _fed(self, site_id: str, site: Site, watch: FeedWatch, payload: bytes | bytearray) -> None:
        heard = watch.heard(payload, site.pipeline.last_valid_at)
        if heard is Heard.NOT_A_VALUE:
            self.counters.feed_refused += 1
            more = self._log.note("not a value")
            if more is not None:
                log.warning(
                    "fleet: site %s: %r on its charger's feed %s is no value p1evse sends; "
                    "someone else publishes there%s",
                    site_id,
                    bytes(payload[:40]),
                    watch.topic,
                    more,
                )
        elif heard is Heard.MOVED:
            self._let_go_soon(site_id)
        elif heard is Heard.BOTH:
            self.counters.fed_by_both += 1
            self.fed_by_both = (site_id, self._clock.time())
            more = self._log.note("fed by both")
            if more is not None:
                log.warning(
                    "fleet: site %s: another process feeds its charger too, while its "
                    "readings still come here: the broker deals one meter to two processes "
                    "(fleet.share_group needs a sticky strategy, docs/scaling.md)%s",
                    site_id,
                    more,
                )

    def _stale_or_moved(self, site_id: str, site: Site, watch: FeedWatch) -> bool:
        """The site's stale guard: True lets it act; False when another process fed the
        charger since the site's last reading, and the site is let go instead."""
        if not watch.fed_by_another(site.pipeline.last_valid_at):
            return True
        self._let_go_soon(site_id)
        return False

    def _let_go_soon(self, site_id: str) -> None:
        """Let go a little later (the site may be in the middle of an event), together
        with the others the broker moved meanwhile, in one log line."""
        self._leaving[site_id] = None
        if self._letting_go is None:
            when = self._clock.time() + LET_GO_AFTER_S
            self._letting_go = self._clock.call_at(when, self._let_go)

    def _let_go(self) -> None:
        self._letting_go = None
        moved = [site_id for site_id in self._leaving if site_id in self.sites]
        self._leaving = {}
        for site_id in moved:
            self._drop(site_id)
        self.counters.moved += len(moved)
        if not moved:
            return
        # their memory comes back with the next sweep's full collection: one per
        # batch would hold the loop for ~100 ms each at ten thousand sites
        self._collect_due = True
        shown = ", ".join(moved[:10]) + (", …" if len(moved) > 10 else "")
        many = len(moved) > 1
        log.info(
            "fleet: %s let go: another process feeds %s now, the broker deals %s to it (%s)",
            f"{len(moved)} sites" if many else "a site",
            "their chargers" if many else "its charger",
            "their meters" if many else "its meter",
            shown,
        )

    def _freeze(self) -> None:
        """The sites made lately are long-lived: out of the collector's way. At ten
        thousand sites a full collection walks them all for about 100 ms, holding the
        loop; frozen, they are never walked."""
        if self._freezing is not None:
            self._freezing.cancel()
        self._freezing = None
        self._unfrozen = 0
        gc.freeze()

    def _changed(self, site_id: str, _: object) -> None:
        assert self._states is not None
        self._states.changed(site_id)

    def _state_of(self, site_id: str) -> tuple[str, dict[str, Any]] | None:
        site = self.sites.get(site_id)
        topic = site.settings.mqtt.state_topic if site is not None else None
        if site is None or topic is None:
            return None
        return topic, site_row(site_id, site, self.records[site_id], self._clock.time())

    def _pause_held(self, site_id: str, held: bool) -> None:
        topic = self.settings.paused_topic(site_id)
        self._broker.publish(topic, PAUSED if held else "", qos=1, retain=True)

    # -- idle sites ------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        evict_after = self.settings.evict_after
        period = SWEEP_PERIOD_S if evict_after is None else min(SWEEP_PERIOD_S, evict_after / 4)
        self._sweep = self._clock.call_at(self._clock.time() + period, self._on_sweep)

    def _on_sweep(self) -> None:
        evict_after = self.settings.evict_after
        if evict_after is not None:
            now = self._clock.time()
            idle = [
                site_id
                for site_id, site in self.sites.items()
                if now - site.pipeline.last_valid_at >= evict_after
                # its stale guard has acted (or has nothing to guard): time the process
                # could not run is not counted by it, and a site let go before would
                # never have its charger paused
                and (site.pipeline.stale or not site.pipeline.ever_valid)
                # a pause is let go with the site only once its marker is known
                and (not site.holds_pause or site_id in self.paused)
            ]
            for site_id in idle:
                self._drop(site_id)
            self.counters.evicted += len(idle)
            self._collect_due |= bool(idle)
        if self._collect_due:
            self._collect()
            self._collect_due = False
        evict_after = self.settings.evict_after
        if self._others_heard and evict_after is not None:  # let go by their owners too
            now = self._clock.time()
            self._others_heard = {
                site_id: at for site_id, at in self._others_heard.items() if now - at < evict_after
            }
        self._summarize()
        self._schedule_sweep()

    def _collect(self) -> None:
        """Sites let go were frozen with the rest: their cycles are freed only by a
        full collection of everything unfrozen again (rare: an idle site or a member
        change), and the rest frozen after it."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _drop(self, site_id: str) -> None:
        """Let the site go, leaving what its charger holds to whoever serves it next."""
        self.sites.pop(site_id).leave()
        self.records.pop(site_id).let_go()
        if self._list is not None:
            self._list.forget(site_id)
        if self._states is not None:
            self._states.forget(site_id)
        self._ports.pop(site_id).close()

    def _summarize(self) -> None:
        counters = self.counters
        now = (len(self.sites), counters.created, counters.evicted, counters.moved)
        if now == self._summarized:
            return
        _, created, evicted, moved = self._summarized
        self._summarized = now
        log.info(
            "fleet: %s (%d new, %d let go after fleet.evict_after = %s s, %d moved)",
            sites(len(self.sites)),
            counters.created - created,
            counters.evicted - evicted,
            f"{self.settings.evict_after:g}" if self.settings.evict_after else "never",
            counters.moved - moved,
        )

    # -- the broker's comings and goings, told to every site ------------------------

    def _connected(self) -> None:
        self._markers_brought = set()
        if self.members is None:
            self._tell_connected()
        # a member's sites hear of the connection once it knows which are still its
        # (`_announced`): one that moved meanwhile sends its charger nothing

    def _tell_connected(self) -> None:
        self._told_connected = True
        for port in self._ports.values():
            _tell(port.connected_listeners)
        if self._states is not None:
            self._states.connected()

    def _disconnected(self) -> None:
        self._told_connected = False
        self._markers_brought = None
        if self.members is not None:
            # whoever died meanwhile says nothing this process hears: the next
            # connection's retained members say who is live, then its own "online"
            self.members.forget()
            self.ready = False
        for port in self._ports.values():
            _tell(port.disconnected_listeners)

    def _problem(self, kind: str, problem: str | None) -> None:
        for port in self._ports.values():
            for listener in port.problem_listeners:
                listener(kind, problem)


def _seconds(payload: bytes | bytearray) -> float | None:
    """A handover's age: a plain number of seconds, 0 or more."""
    try:
        age = parse_number(payload)
    except InputRejected:
        return None
    return age if age >= 0 else None


def _tell(listeners: list[Callable[[], None]]) -> None:
    for listener in listeners:
        listener()


def _others(members: Members) -> str:
    others = sorted(members.live - {members.me})
    if not others:
        return "no others"
    many = "s" if len(others) > 1 else ""
    return f"{len(others)} other member{many} ({', '.join(others[:10])})"


def sites(count: int) -> str:
    """`1 site`, `2 sites`"""
    return f"{count} site{'' if count == 1 else 's'}"
