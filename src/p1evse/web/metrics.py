"""/metrics: Prometheus' text format from a registry of the App's own.

Counts are read from the parts that keep them when scraped (each `Count` becomes the
counter `p1evse_<name>_total`), so nothing is counted twice and the publish path pays
nothing for them; only the latency histogram is fed as values are published.
"""

from __future__ import annotations

import gzip
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest

from p1evse import __version__
from p1evse.loopwatch import BUCKETS_S, LoopWatch
from p1evse.model import Event, GridPower
from p1evse.status.state import LinkState
from p1evse.web.http import Response

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.mqtt import Broker
    from p1evse.status.state import SiteState
    from p1evse.supervise import Supervisor
    from p1evse.web.limits import PortCounters
    from p1evse.web.stream import Fanout

# gzip's fastest level: a fleet's /metrics shrinks about tenfold at a fraction of a
# millisecond of the loop per 100 kB, where the default level takes several times that
GZIP_LEVEL = 1


def exposition(registry: CollectorRegistry, headers: Mapping[str, str]) -> Response:
    """/metrics in the format the scraper asks for (Prometheus text or OpenMetrics),
    gzipped when it takes gzip (Prometheus does)."""
    try:
        encoder, content_type = choose_encoder(headers.get("accept", ""))
    except (TypeError, ValueError):  # a version it cannot read: the plain text format
        encoder, content_type = generate_latest, CONTENT_TYPE_LATEST
    body = encoder(registry)
    extra = {"Cache-Control": "no-store", "Vary": "Accept, Accept-Encoding"}
    if takes_gzip(headers.get("accept-encoding", "")):
        body = gzip.compress(body, GZIP_LEVEL)
        extra["Content-Encoding"] = "gzip"
    return Response(body, content_type=content_type, headers=extra)


def takes_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip: named, or `*`, without q=0."""
    offers: dict[str, str] = {}
    for offer in accept_encoding.split(","):
        name, _, parameters = offer.partition(";")
        offers.setdefault(name.strip().lower(), parameters.strip().lower())
    gzip_offer = offers.get("gzip", offers.get("*"))
    if gzip_offer is None:
        return False
    quality = gzip_offer.removeprefix("q=")
    return not quality.startswith("0") or quality.strip("0.") != ""


# From a reading's arrival to its value being handed to the MQTT client: tens of µs
# when relayed at once, up to `pair_window` (0.5 s) for a zero half that waits for
# its partner.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    def __init__(
        self,
        state: SiteState,
        broker: Broker,
        supervisor: Supervisor,
        fanout: Fanout,
        port: PortCounters,
        clock: Callable[[], float],
        loop_watch: LoopWatch,
    ) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "p1evse_pipeline_latency_seconds",
            "Time from the arrival of the reading that completes a value to the value's "
            "hand-over to the MQTT client",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(
            _SiteCollector(state, broker, supervisor, fanout, port, clock, loop_watch)
        )
        ProcessCollector(registry=self.registry)

    def observe(self, event: Event) -> None:
        """A Bridge observer: called right after the sinks have taken a value."""
        if isinstance(event, GridPower) and not event.failsafe:
            self.latency.observe(self._clock() - event.at)


@dataclass(frozen=True, slots=True)
class _SiteCollector:
    state: SiteState
    broker: Broker
    supervisor: Supervisor
    fanout: Fanout
    port: PortCounters
    clock: Callable[[], float]
    loop_watch: LoopWatch

    def collect(self) -> Iterator[Metric]:
        state = self.state
        now = self.clock()

        info = InfoMetricFamily("p1evse_build", "Version of p1evse and of Python")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info

        yield from counter_families(
            [
                *state.counts(),
                *self.broker.counts(),
                *self.supervisor.counts(),
                *self.fanout.counts(),
                *self.port.counts(),
            ]
        )
        yield GaugeMetricFamily(
            "p1evse_stale", "1 while the stale guard is active", value=int(state.stale is not None)
        )
        yield CounterMetricFamily(
            "p1evse_stale_seconds",
            "Time spent stale (no valid reading for stale_after)",
            value=state.stale_seconds(now),
        )
        yield GaugeMetricFamily(
            "p1evse_last_reading_age_seconds",
            "Seconds since the last valid reading (since start-up if none came yet)",
            value=state.quiet_for(now),
        )
        if state.meter is not None:
            yield GaugeMetricFamily(
                "p1evse_grid_watts",
                "Grid power of the last reading, W: + import, - export",
                value=state.meter.net_w,
            )
        if state.published is not None:
            yield GaugeMetricFamily(
                "p1evse_published_watts",
                "The last value sent to the charger, W",
                value=state.published.watts,
            )

        charger = state.charger
        if charger is not None and charger.amps is not None:
            yield GaugeMetricFamily(
                "p1evse_charger_current_amps",
                "The current the car draws, as the charger last reported it",
                value=charger.amps,
            )
        problems = GaugeMetricFamily(
            "p1evse_problem",
            "1 for each part of the service that cannot do its job (what /healthz names)",
            labels=["part"],
        )
        for part in state.problems:
            problems.add_metric([part], 1)
        yield problems

        connected = GaugeMetricFamily(
            "p1evse_connected", "1 while the connection is up", labels=["endpoint"]
        )
        broker_up = state.links["broker"].state is LinkState.CONNECTED
        connected.add_metric([self.broker.endpoint], int(broker_up))
        yield connected
        yield GaugeMetricFamily(
            "p1evse_page_clients", "Status pages receiving live updates", value=len(self.fanout)
        )
        yield GaugeMetricFamily(
            "p1evse_web_connections", "Open connections to the status page", value=self.port.open
        )
        yield from loop_families(self.loop_watch)


def loop_families(watch: LoopWatch) -> Iterator[Metric]:
    """How late the event loop ran a timer: a histogram, and the longest lately."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip([*map(str, BUCKETS_S), "+Inf"], watch.counts, strict=True):
        total += count
        buckets.append((bound, total))
    yield HistogramMetricFamily(
        "p1evse_loop_lag_seconds",
        "How late the event loop ran a timer due every 50 ms (a stall delays every reading)",
        buckets=buckets,
        sum_value=watch.total_s,
    )
    yield GaugeMetricFamily(
        "p1evse_loop_lag_max_seconds",
        "The longest event-loop delay of the last one to two minutes",
        value=watch.longest(),
    )
    yield CounterMetricFamily(
        "p1evse_loop_held_seconds",
        "Time the event loop was held over a second at a time (the process stopped, the "
        "machine swapping): not counted as the meter's silence",
        value=watch.held_s,
    )


def counter_families(counts: Iterable[Count]) -> Iterable[CounterMetricFamily]:
    """One counter family for each name the counts carry, with a sample for each."""
    families: dict[str, CounterMetricFamily] = {}
    for count in counts:
        family = families.get(count.name)
        if family is None:
            family = families[count.name] = CounterMetricFamily(
                f"p1evse_{count.name}", count.help, labels=list(count.labels)
            )
        family.add_metric(list(count.labels.values()), count.value)
    return families.values()
