from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from p1evse.app import App, Service
from p1evse.config import Settings
from p1evse.sources import Source
from tests.brokers import BrokerProcess, mosquitto_available
from tests.gateways import Gateway
from tests.pki import Pki, new_pki
from tests.probe import EVENT_TIMEOUT_S

pytest_plugins = ["tests.browsers"]  # the `browser` fixture

BROKER_KINDS = ["mosquitto", "amqtt"]
# a test that computes whole simulated days takes 5-15 s on a quiet machine and 40 s
# beside two CPU hogs: the suite's 60 s timeout would be a coin toss on a slower one
HEAVY_TIMEOUT_S = 300


@pytest.fixture(autouse=True)
def _no_p1evse_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings; the developer's own P1EVSE_* variables stay out."""
    for name in list(os.environ):
        if name.upper().startswith("P1EVSE_"):
            monkeypatch.delenv(name)


def require(tool: str, present: bool) -> None:
    """A tool the suite needs from the system: skipped on a developer's machine without
    it, a failure under CI, whose `.ci/run` must install it."""
    if not present:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {tool} (.ci/run does)")
        pytest.skip(f"{tool} is not installed")


def _require(kind: str) -> None:
    if kind == "mosquitto":
        require("mosquitto", mosquitto_available())


@pytest.fixture(params=BROKER_KINDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A real broker in its own process, on a free loopback port."""
    _require(request.param)
    process = BrokerProcess(request.param, tmp_path)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def one_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """One real broker, for tests where its kind does not matter: mosquitto where it is
    installed (always under CI), else amqtt."""
    kind = "mosquitto" if mosquitto_available() or os.environ.get("CI") else "amqtt"
    _require(kind)
    process = BrokerProcess(kind, tmp_path)
    process.start()
    yield process
    process.stop()


def settings_for(broker: BrokerProcess, **sections: dict[str, Any]) -> Settings:
    """Settings for `broker`; the web server is off unless `web` says otherwise."""
    mqtt = {"port": broker.port, **sections.pop("mqtt", {})}
    web = sections.pop("web", {"listen": None})
    return Settings(mqtt=mqtt, web=web, **sections)


@asynccontextmanager
async def running(settings: Settings, source: Source | None = None) -> AsyncIterator[App]:
    """The service in this test's event loop, stopped as SIGTERM would stop it; `source`
    stands in for the configured one."""
    app = App(settings, asyncio.get_running_loop())
    if source is not None:
        app.site.source = source
    async with serving(app):
        yield app


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[None]:
    """`service` run in this test's event loop, stopped as SIGTERM would stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name="service")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, EVENT_TIMEOUT_S)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A P1-to-TCP gateway on loopback (tests.gateways)."""
    server = Gateway()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A private CA; `pki.issue(name)` makes certificates signed by it."""
    return new_pki(tmp_path)
