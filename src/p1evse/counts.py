"""What the parts of the service have counted, told in one way: every part that counts
something (the pipeline, the charger's read-back, each source and sink, the broker
connection, the page's port) offers `counts()`, and /metrics exports each `Count` as the
counter `p1evse_<name>_total` without knowing the part. Counts of one name form one
family: they share its help text and label names, and differ in the labels' values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Count:
    """How often something happened since start-up."""

    name: str  # snake_case: /metrics calls it p1evse_<name>_total
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


class Counted(Protocol):
    def counts(self) -> list[Count]:
        """Everything the part counts, each now."""
        ...


def connection_counts(
    endpoint: str, connects: int, drops: int, failed_attempts: int, prefix: str = ""
) -> list[Count]:
    """How a connection to `endpoint` (`mqtt://host:port`, the P1 port) has fared."""
    labels = {"endpoint": endpoint}
    return [
        Count(
            f"{prefix}reconnects",
            "Connections made after the first one",
            max(0, connects - 1),
            labels,
        ),
        Count(
            f"{prefix}disconnects",
            "Connections lost (or closed for silence) after they were up",
            drops,
            labels,
        ),
        Count(
            f"{prefix}connect_failures", "Attempts to connect that failed", failed_attempts, labels
        ),
    ]
