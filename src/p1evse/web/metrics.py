"""/metrics: Prometheus' text format from a registry of the App's own.

Counts are read from the pipeline's counters and the broker's stats when scraped, so
nothing is counted twice and the publish path pays nothing for them; only the latency
histogram is fed as values are published.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from p1evse import __version__
from p1evse.model import Event, GridPower, Rejection
from p1evse.status.state import LinkState
from p1evse.web.limits import Limit

if TYPE_CHECKING:
    from p1evse.mqtt import Broker
    from p1evse.status.state import SiteState
    from p1evse.web.limits import PortCounters
    from p1evse.web.stream import Fanout

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
        fanout: Fanout,
        port: PortCounters,
        clock: Callable[[], float],
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
        self.registry.register(_SiteCollector(state, broker, fanout, port, clock))
        ProcessCollector(registry=self.registry)

    def observe(self, event: Event) -> None:
        """Told every event by the status model, right after the sinks have taken it."""
        if isinstance(event, GridPower) and not event.failsafe:
            self.latency.observe(self._clock() - event.at)


@dataclass(frozen=True, slots=True)
class _SiteCollector:
    state: SiteState
    broker: Broker
    fanout: Fanout
    port: PortCounters
    clock: Callable[[], float]

    def collect(self) -> Iterator[Metric]:
        state = self.state
        counters = state.counters
        now = self.clock()

        info = InfoMetricFamily("p1evse_build", "Version of p1evse and of Python")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info

        yield CounterMetricFamily(
            "p1evse_readings", "Complete meter readings accepted", value=counters.readings
        )
        rejected = CounterMetricFamily(
            "p1evse_rejected", "Input values refused, by reason", labels=["reason"]
        )
        for reason in Rejection:
            rejected.add_metric([reason.value], counters.rejected.get(reason, 0))
        yield rejected
        yield CounterMetricFamily(
            "p1evse_published", "Values sent to the charger", value=counters.published
        )

        yield GaugeMetricFamily(
            "p1evse_stale", "1 while the stale guard is active", value=int(state.stale is not None)
        )
        yield CounterMetricFamily(
            "p1evse_stale_entered", "Times the stale guard acted", value=counters.stale_entered
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
        if charger is not None:
            refused = CounterMetricFamily(
                "p1evse_charger_rejected",
                "Reports and answers of the charger refused, by reason",
                labels=["reason"],
            )
            for reason, count in charger.rejected.items():
                refused.add_metric([reason.value], count)
            yield refused
        problems = GaugeMetricFamily(
            "p1evse_problem",
            "1 for each part of the service that cannot do its job (what /healthz names)",
            labels=["part"],
        )
        for part in state.problems:
            problems.add_metric([part], 1)
        yield problems

        endpoint = [f"mqtt://{self.broker.address}"]
        connected = GaugeMetricFamily(
            "p1evse_connected", "1 while the connection is up", labels=["endpoint"]
        )
        connected.add_metric(endpoint, int(state.links["broker"].state is LinkState.CONNECTED))
        yield connected
        stats = self.broker.stats
        reconnects = CounterMetricFamily(
            "p1evse_reconnects", "Connections made after the first one", labels=["endpoint"]
        )
        reconnects.add_metric(endpoint, max(0, stats.connects - 1))
        yield reconnects
        unsent = CounterMetricFamily(
            "p1evse_unsent", "Messages dropped while the connection was down", labels=["endpoint"]
        )
        unsent.add_metric(endpoint, stats.unsent)
        yield unsent
        skipped = CounterMetricFamily(
            "p1evse_retained_skipped",
            "Old retained messages on the meter's topics, not taken for readings",
            labels=["endpoint"],
        )
        skipped.add_metric(endpoint, stats.retained_skipped)
        yield skipped

        yield GaugeMetricFamily(
            "p1evse_page_clients", "Status pages receiving live updates", value=len(self.fanout)
        )
        yield CounterMetricFamily(
            "p1evse_page_clients_dropped",
            "Status pages cut off because they did not keep up",
            value=self.fanout.dropped,
        )

        port = self.port
        yield GaugeMetricFamily(
            "p1evse_web_connections", "Open connections to the status page", value=port.open
        )
        refused = CounterMetricFamily(
            "p1evse_web_refused",
            "Connections and live streams refused at web.max_connections or web.max_streams",
            labels=["limit"],
        )
        for limit in (Limit.MAX_CONNECTIONS, Limit.MAX_STREAMS):
            refused.add_metric([limit.value], port.acted[limit])
        yield refused
        yield CounterMetricFamily(
            "p1evse_web_stalled",
            "Connections reset because the client left a write unread for web.write_timeout",
            value=port.acted[Limit.WRITE_TIMEOUT],
        )
