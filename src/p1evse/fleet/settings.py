"""What a fleet is configured with: its bounds, when it lets a site go, and which of the
site ids this process owns."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from p1evse.settings import SITE_ID, SITE_ID_RULE, Section, TopicPrefix

MAX_SHARDS = 1_000_000
MAX_SITES_FILE_BYTES = 96 * 2**20  # a million ids of 64 characters, and room for comments


@dataclass(frozen=True, slots=True)
class Shard:
    """Static partitioning: this process owns the site ids that hash to `index` of
    `count`. Every process of a fleet takes the same `count` and its own `index`."""

    index: int
    count: int

    def owns(self, site: str) -> bool:
        return site_hash(site) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def site_hash(site: str) -> int:
    """A hash of the site id that every process and every run agrees on (Python's own
    `hash` of a str differs between runs)."""
    digest = hashlib.blake2b(site.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _read_sites_file(path: Path) -> str:
    """The text of a regular file of at most `MAX_SITES_FILE_BYTES`."""
    try:
        with path.open("rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ValueError(f"sites_file: {path} is no regular file")
            data = file.read(MAX_SITES_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"sites_file: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SITES_FILE_BYTES:
        raise ValueError(
            f"sites_file: {path} is larger than {MAX_SITES_FILE_BYTES // 2**20} MiB "
            "(a million site ids of 64 characters fit)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"sites_file: {path} is no UTF-8 text: {exc}") from None


def parse_shard(value: Any) -> Any:
    """`"I/N"`: this process is shard I (from 0) of N."""
    if isinstance(value, Shard) or value is None or value == "":
        return value or None
    text = str(value)
    match = re.fullmatch(r"\s*(\d{1,20})\s*/\s*(\d{1,20})\s*", text)
    if match is None:
        raise ValueError(
            f"expected I/N (this process is shard I of N, I from 0), got {text[:40]!r}"
        )
    index, count = int(match[1]), int(match[2])
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"N of I/N goes from 1 to {MAX_SHARDS}, got {count}")
    if index >= count:
        raise ValueError(f"I of I/N goes from 0 to N-1 = {count - 1}, got {index}")
    return Shard(index, count)


ShardSpec = Annotated[Shard | None, BeforeValidator(parse_shard)]


class FleetSettings(Section):
    """Used when the source's topics capture a site id."""

    max_sites: int = Field(10_000, ge=1, le=1_000_000)
    # a site with no valid reading this long is let go (its pause, if it holds one, is
    # remembered and released when it is back); null: never
    evict_after: float | None = Field(3600.0, gt=0, le=30 * 86_400)
    # this process's share of the site ids, "I/N"; null: all of them
    shard: ShardSpec = None
    # share the sites with the other processes that announce themselves on this topic
    membership: bool = False
    # a member says "online" again this often (seconds), and one not heard for three of
    # them is taken as gone; the same on every member
    member_heartbeat: float = Field(30.0, ge=0.5, le=3600)
    # the fleet's own topics: <topic>/members/<client id>, <topic>/paused/<site id>,
    # <topic>/handover/<site id>
    topic: TopicPrefix = "p1evse/fleet"
    # the site ids, if known: a process subscribes to the exact topics of the listed
    # sites it owns (no pattern: it reads none of the others' messages), and serves no
    # other; or sites_file: a file with one id a line (# starts a comment)
    sites: list[str] = Field(default_factory=list, max_length=1_000_000)
    sites_file: Path | None = None
    # the broker deals the meters among the processes: every process subscribes to
    # "$share/<share_group>/<source topic>"; only on a broker that keeps each meter's
    # messages on one member, which share_sticky: true says (docs/scaling.md)
    share_group: str | None = None
    share_sticky: bool = False

    @field_validator("share_group")
    @classmethod
    def _share_name(cls, group: str | None) -> str | None:
        if group is not None and SITE_ID.fullmatch(group) is None:
            raise ValueError(f"no group name: {SITE_ID_RULE}")
        return group

    @model_validator(mode="before")
    @classmethod
    def _sites_from_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("sites_file") in (None, ""):
            return data
        if data.get("sites"):
            raise ValueError("set sites or sites_file, not both")
        path = Path(data["sites_file"])
        text = _read_sites_file(path)
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        sites = [line for line in lines if line]
        if not sites:  # no list at all would serve every site
            raise ValueError(f"sites_file: {path} lists no site id (one a line)")
        return {**data, "sites": sites}

    @field_validator("sites")
    @classmethod
    def _site_ids(cls, sites: list[str]) -> list[str]:
        bad = [site for site in sites if SITE_ID.fullmatch(site) is None]
        if bad:
            shown = ", ".join(repr(site[:40]) for site in bad[:5])
            raise ValueError(f"{len(bad)} are no site id ({SITE_ID_RULE}): {shown}")
        repeated = len(sites) - len(set(sites))
        if repeated:
            raise ValueError(f"{repeated} site ids are listed more than once")
        return sites

    def one_of_many(self) -> bool:
        """Whether other processes serve the fleet's other sites: each then announces
        itself on a topic of its own (`announce_topic`, `Settings.announced_on`), not on
        the availability topic they all have."""
        return self.membership or self.shard is not None or self.share_group is not None

    def announce_topic(self, client_id: str) -> str:
        """Where a process of a fleet of many says "online" (retained; "offline" as its
        will): a member among the members, any other kind (a shard, a shared group's)
        apart, so that members never count it as one of theirs."""
        if self.membership:
            return self.member_topic(client_id)
        return f"{self.topic}/processes/{client_id}"

    def member_topic(self, member: str) -> str:
        """Where a member announces itself: "online", retained; "offline" as its will."""
        return f"{self.topic}/members/{member}"

    def handover_topic(self, site: str) -> str:
        """Where a member that lets a site go to a member that joined says how long
        ago its meter last gave a valid reading, so that the new owner's stale guard
        runs on (never said of a site whose meter never did)."""
        return f"{self.topic}/handover/{site}"

    def paused_topic(self, site: str) -> str:
        """Retained while the fleet holds a pause claim on the site's charger, so that
        whoever serves the site next (a survivor, this process after a restart, this
        process when an idle site is back) takes the claim over."""
        return f"{self.topic}/paused/{site}"
