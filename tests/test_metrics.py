"""/metrics against the parts that count: every count that a part of the running service
declares (`counts()`) is in the exposition, with its value and its help text, and in the
README, for each source type and both of the charger's transports. The parts are found
by walking the service's objects, so a part whose counts /metrics does not show fails
here, wherever it sits."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

from p1evse.app import App
from p1evse.counts import Count, Counted
from p1evse.sinks.openevse_http import OpenEvseHttpSink
from p1evse.sources.build import SOURCE_TYPES
from p1evse.status.state import LinkState
from p1evse.web.metrics import exposition, takes_gzip
from tests import telegrams
from tests.brokers import BrokerProcess
from tests.fake_openevse import FakeOpenEvse
from tests.gateways import Gateway
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.test_app import DELIVERED, GRID_IE, RETURNED
from tests.test_homewizard import Device
from tests.test_hostile_mqtt import FailingSource
from tests.test_web import Site, serving, web_settings
from tests.waiting import state_holds

Key = tuple[str, tuple[tuple[str, str], ...]]  # a sample's name and labels
README = Path(__file__).resolve().parent.parent / "README.md"


def parts(root: object) -> list[Counted]:
    """Every object of p1evse's own reachable from `root` that counts something; what
    such a part holds, it counts for (the dead-man's switch for its connections)."""
    found: list[Counted] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif type(item).__module__.startswith("p1evse."):
            if callable(getattr(item, "counts", None)):
                found.append(cast(Counted, item))
            elif dataclasses.is_dataclass(item):
                stack.extend(getattr(item, field.name) for field in dataclasses.fields(item))
            else:
                stack.extend(vars(item).values() if hasattr(item, "__dict__") else ())
    return found


def key(count: Count) -> Key:
    return f"p1evse_{count.name}_total", tuple(sorted(count.labels.items()))


def declared(app: App) -> dict[Key, Count]:
    """What the service's parts count now, by sample; two parts never differ on one."""
    counts: dict[Key, Count] = {}
    for part in parts(app):
        for count in part.counts():
            assert counts.setdefault(key(count), count) == count, f"two parts count {key(count)}"
    return counts


def documented() -> set[str]:
    """The metrics the README's section "Metrics" names."""
    section = README.read_text().split("\n### Metrics\n")[1].split("\n#")[0]
    return set(re.findall(r"`(p1evse_\w+)", section))


async def every_count_is_exposed(site: Site) -> dict[Key, float]:
    """Fetch /metrics: each count declared before the fetch is in it, with a value
    between the one before and the one after (counts only grow) and its help text, and
    the README lists it. The exposed values are returned."""
    before = declared(site.app)
    status, text, _ = await site.get("metrics")
    after = declared(site.app)
    assert status == 200
    helps: dict[str, str] = {}
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            helps[sample.name] = family.documentation
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    missing = sorted(set(before) - set(samples))
    assert not missing, f"/metrics lacks {missing}"
    undocumented = sorted({name for name, _ in before} - documented())
    assert not undocumented, f"README.md's section on metrics lacks {undocumented}"
    for sample, count in before.items():
        assert count.value <= samples[sample] <= after[sample].value, sample
        assert helps[sample[0]] == count.help, sample
    return {sample: samples[sample] for sample in before}


def nonzero(exposed: dict[Key, float]) -> set[str]:
    """The counters (without p1evse_ and _total) with a sample above zero."""
    return {name[7:-6] for (name, _), value in exposed.items() if value > 0}


DEADMAN = "p1evse/deadman"  # its marker, retained again on every connect


async def mqtt_split(broker: BrokerProcess) -> None:
    """The most counts at once: retained and bad payloads, pairing, a bad charger
    report, a stale spell while the broker is away, and a refused live stream."""
    async with Probe(broker.port) as early:  # an old value, kept for new subscribers
        await early.subscribe(DELIVERED)
        early.publish(DELIVERED, "9.999", retain=True)
        await early.next_payload(DELIVERED)
    publish = {"pair_window": 1.0, "stale_after": 2.0}
    settings = web_settings(broker, publish=publish, web={"max_streams": 1})
    async with serving(settings) as site:
        site.probe.publish("openevse/state", "1e999")
        site.probe.publish(DELIVERED, "abc")
        await site.send(DELIVERED, "1.500", "1500")
        site.probe.publish(RETURNED, "0")  # its partner: absorbed
        site.probe.publish(RETURNED, "0")  # waits for its partner...
        site.probe.publish(RETURNED, "0")  # ...and is repeated
        await site.send(DELIVERED, "0", "0")
        broker.stop()
        state = site.state
        await state_holds(state, lambda: state.stale is not None)  # its pause goes unsent
        async with site.http.get(site.url + "api/events") as stream:
            assert stream.status == 200
            async with site.http.get(site.url + "api/events") as refused:
                assert refused.status == 503
        broker.start()
        async with Probe(broker.port) as probe:  # the dead-man's switch is back
            await probe.subscribe(DEADMAN)
            await probe.next_payload(DEADMAN)
        await state_holds(state, lambda: state.links["broker"].state is LinkState.CONNECTED)
        exposed = await every_count_is_exposed(site)
    assert nonzero(exposed) >= {
        "halves",
        "absorbed_halves",
        "duplicate_halves",
        "readings",
        "rejected",
        "published",
        "stale_entered",
        "charger_rejected",
        "retained_skipped",
        "unsent",
        "reconnects",
        "disconnects",
        "deadman_reconnects",
        "deadman_disconnects",
        "web_refused",
    }


async def one_reading(broker: BrokerProcess, source: dict[str, str], payload: str) -> None:
    """A source that counts nothing of its own: a payload on its topic, worth 1500 W."""
    async with serving(web_settings(broker, source=source)) as site:
        await site.send(source["topic"], payload, "1500")
        exposed = await every_count_is_exposed(site)
    assert nonzero(exposed) >= {"readings", "published"}


async def mqtt_value(broker: BrokerProcess) -> None:
    await one_reading(broker, {"type": "mqtt_value", "topic": "meter/power"}, "1500")


async def mqtt_json(broker: BrokerProcess) -> None:
    source = {"type": "mqtt_json", "topic": "meter/json", "power_field": "power"}
    await one_reading(broker, source, '{"power": 1.5}')


async def mqtt_telegram(broker: BrokerProcess) -> None:
    async with serving(web_settings(broker, source={"type": "mqtt_telegram"})) as site:
        site.probe.publish("dsmr/raw", b"\0\0" + telegrams.dsmr5(import_w=1500))
        assert await site.probe.next_payload(GRID_IE) == "1500"
        exposed = await every_count_is_exposed(site)
    assert nonzero(exposed) >= {"readings", "source_telegrams", "source_skipped_bytes"}


async def p1(broker: BrokerProcess) -> None:
    """Over a TCP gateway that drops the connection once."""
    gateway = Gateway()
    await gateway.start()
    try:
        source = {"type": "p1", "url": gateway.url}
        async with serving(web_settings(broker, source=source)) as site:
            meter = await gateway.connection()
            meter.write(b"\0\0" + telegrams.dsmr5(import_w=1500, clock="170102192002W"))
            assert await site.probe.next_payload(GRID_IE) == "1500"
            meter.close()
            meter = await gateway.connection()  # the source is back
            meter.write(telegrams.dsmr5(import_w=1600, clock="170102192003W"))
            assert await site.probe.next_payload(GRID_IE) == "1600"
            exposed = await every_count_is_exposed(site)
    finally:
        await gateway.stop()
    assert nonzero(exposed) >= {
        "readings",
        "source_telegrams",
        "source_skipped_bytes",
        "reconnects",
        "disconnects",
    }
    assert exposed["p1evse_disconnects_total", (("endpoint", gateway.url),)] == 1


async def homewizard(broker: BrokerProcess) -> None:
    """Polled over HTTP, the values posted to the charger over HTTP, which fails once."""
    device = Device()
    await device.start()
    try:
        async with FakeOpenEvse(fail={"/status": [500]}) as charger:
            source = {"type": "homewizard", "host": "127.0.0.1", "port": device.port}
            openevse = {"transport": "http", "url": charger.url}
            async with serving(web_settings(broker, source=source, openevse=openevse)) as site:
                [sink] = site.app.site.sinks
                assert isinstance(sink, OpenEvseHttpSink)
                state = site.state
                await state_holds(state, lambda: sink.failures > 0 and state.published is not None)
                exposed = await every_count_is_exposed(site)
    finally:
        await device.stop()
    assert nonzero(exposed) >= {
        "readings",
        "published",
        "source_polls",
        "charger_request_failures",
    }


CASES: dict[str, Callable[[BrokerProcess], Awaitable[None]]] = {
    "mqtt_split": mqtt_split,
    "mqtt_value": mqtt_value,
    "mqtt_json": mqtt_json,
    "mqtt_telegram": mqtt_telegram,
    "p1": p1,
    "homewizard": homewizard,
}


@pytest.mark.parametrize("source_type", sorted(SOURCE_TYPES))
async def test_every_count_reaches_metrics(one_broker: BrokerProcess, source_type: str) -> None:
    await CASES[source_type](one_broker)


async def test_a_restarted_task_is_counted(one_broker: BrokerProcess) -> None:
    source = FailingSource(starts=2)
    async with serving(web_settings(one_broker), source) as site:
        await asyncio.wait_for(source.started_again.wait(), EVENT_TIMEOUT_S)
        exposed = await every_count_is_exposed(site)
    assert exposed["p1evse_task_restarts_total", (("task", "source:mqtt_split"),)] >= 1


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("GZIP, deflate", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000, *", False),
        ("*;q=0", False),
        ("deflate", False),
        ("", False),
    ],
)
def test_metrics_are_gzipped_only_for_a_scraper_that_takes_gzip(
    accept_encoding: str, gzipped: bool
) -> None:
    assert takes_gzip(accept_encoding) is gzipped


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text; version=x",
        "text/plain; version=1.x",
        "application/openmetrics-text; version=" + "9" * 5000,
    ],
)
def test_a_format_version_it_cannot_read_gets_the_plain_text_format(accept: str) -> None:
    registry = CollectorRegistry()
    Gauge("p1evse_probe", "a probe", registry=registry).set(1)
    answer = exposition(registry, {"accept": accept})
    assert answer.status == 200
    assert answer.content_type.startswith("text/plain")
    assert b"p1evse_probe 1.0" in answer.body
