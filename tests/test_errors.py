"""The one error tree: every error class p1evse defines is a P1evseError, and a charger's
refusal carries its HTTP status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import socket

import pytest

import p1evse
from p1evse.errors import ChargerError, ConfigError, InputRejected, P1evseError
from p1evse.model import Rejection
from p1evse.sinks.charger import OpenevseSettings
from p1evse.sinks.openevse_http import get_json
from tests.fake_openevse import FakeOpenEvse


def _error_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a p1evse module, by its qualified name."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(p1evse.__path__, "p1evse."):
        if module_info.name == "p1evse.__main__":  # importing it runs the command line
            continue
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def test_every_error_p1evse_defines_is_a_p1evse_error() -> None:
    classes = _error_classes()
    assert {"p1evse.errors.ConfigError", "p1evse.mqtt.BrokerUnavailable"} <= classes.keys()
    outside = [name for name, cls in classes.items() if not issubclass(cls, P1evseError)]
    assert outside == []


def test_the_errors_keep_what_their_callers_read() -> None:
    config = ConfigError(["a: bad", "b: worse"])
    assert (config.problems, str(config)) == (["a: bad", "b: worse"], "a: bad\nb: worse")
    rejected = InputRejected(Rejection.CRC, "checksum 1234")
    assert (rejected.reason, rejected.detail, str(rejected)) == (
        Rejection.CRC,
        "checksum 1234",
        "checksum 1234",
    )
    assert not isinstance(rejected, ValueError)  # nothing catches it as one


def _charger(url: str, **login: str) -> OpenevseSettings:
    return OpenevseSettings(transport="http", url=url, timeout=2, **login)


async def test_a_charger_that_refuses_says_its_status() -> None:
    async with FakeOpenEvse(username="admin", password="right", fail={"/config": [503]}) as fake:
        with pytest.raises(ChargerError) as refused_login:
            await get_json(_charger(fake.url), "/config")
        with pytest.raises(ChargerError) as unavailable:
            await get_json(_charger(fake.url, username="admin", password="right"), "/config")
    assert refused_login.value.status == 401
    assert unavailable.value.status == 503
    assert str(unavailable.value) == f"GET {fake.url}/config: HTTP 503"


async def test_a_charger_that_does_not_answer_has_no_status() -> None:
    with socket.socket() as closed:  # a free port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ChargerError) as unreachable:
        await get_json(_charger(f"http://127.0.0.1:{port}"), "/status")
    assert unreachable.value.status is None
    async with FakeOpenEvse(garbage={("GET", "/config"): b"{"}) as fake:
        with pytest.raises(ChargerError) as garbled:
            await get_json(_charger(fake.url), "/config")
    assert garbled.value.status is None
    assert str(garbled.value).startswith(f"GET {fake.url}/config: bad_json: ")
