"""A loopback HTTP server standing in for an OpenEVSE charger's API, as the firmware's
web server documents it: GET/POST /status, GET/POST/DELETE /claims/<client id>, HTTP Basic
auth. It records every request and can be told to fail or stall."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.probe import EVENT_TIMEOUT_S


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any
    authorization: str | None


@dataclass
class FakeOpenEvse:
    username: str | None = None
    password: str | None = None
    status: dict[str, Any] = field(
        default_factory=lambda: {
            "grid_ie": 0,
            "divertmode": 2,
            "divert_active": False,
            "charge_rate": 0,
            "amp": 0,
            "pilot": 32,
            "state": 1,
        }
    )
    config: dict[str, Any] = field(
        default_factory=lambda: {"divert_type": 1, "mqtt_grid_ie": "p1evse/grid_ie"}
    )
    claims: dict[int, dict[str, Any]] = field(default_factory=dict)
    # path, or (method, path) -> HTTP statuses to answer its next requests with
    fail: dict[str | tuple[str, str], list[int]] = field(default_factory=dict)
    # (method, path) -> a body to answer with instead (status 200), however broken
    garbage: dict[tuple[str, str], bytes] = field(default_factory=dict)
    stall: asyncio.Event | None = None  # requests wait for it while it is set up
    # (method, path) -> an event its requests wait for while it is set up
    stalls: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    redirect: str | None = None  # every request is answered 302 to this URL + its path
    port: int = 0

    def __post_init__(self) -> None:
        self.requests: asyncio.Queue[Request] = asyncio.Queue()
        self.log: list[Request] = []
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/status", self._get_status)
        app.router.add_get("/config", self._get_config)
        app.router.add_post("/status", self._post_status)
        app.router.add_get("/claims/{client}", self._get_claim)
        app.router.add_post("/claims/{client}", self._post_claim)
        app.router.add_delete("/claims/{client}", self._delete_claim)
        self._runner = web.AppRunner(app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeOpenEvse:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def next_request(self, timeout: float = EVENT_TIMEOUT_S) -> Request:
        return await asyncio.wait_for(self.requests.get(), timeout)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        recorded = Request(request.method, request.path, body, request.headers.get("Authorization"))
        self.log.append(recorded)
        self.requests.put_nowait(recorded)
        if self.stall is not None:
            await self.stall.wait()
        stall = self.stalls.get((request.method, request.path))
        if stall is not None:
            await stall.wait()
        if self.redirect is not None:
            raise web.HTTPFound(f"{self.redirect}{request.path}")
        if self.username is not None and not self._authorised(recorded.authorization):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="openevse"'})
        for key in ((request.method, request.path), request.path):
            if self.fail.get(key):
                return web.Response(status=self.fail[key].pop(0))
        if (request.method, request.path) in self.garbage:
            body = self.garbage[request.method, request.path]
            return web.Response(body=body, content_type="application/json")
        response: web.StreamResponse = await handler(request)
        return response

    def _authorised(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    async def _get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status)

    async def _get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config)

    async def _post_status(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.status.update({key: body[key] for key in ("grid_ie",) if key in body})
        return web.json_response({"msg": "done"})

    async def _get_claim(self, request: web.Request) -> web.Response:
        claim = self.claims.get(_client(request))
        if claim is None:
            return web.json_response({"msg": "Not found"}, status=404)
        return web.json_response(claim)

    async def _post_claim(self, request: web.Request) -> web.Response:
        self.claims[_client(request)] = await request.json()
        return web.json_response({"msg": "done"})

    async def _delete_claim(self, request: web.Request) -> web.Response:
        if self.claims.pop(_client(request), None) is None:
            return web.json_response({"msg": "Not found"}, status=404)
        return web.json_response({"msg": "done"})


def _client(request: web.Request) -> int:
    """The claim's client id as the firmware reads it: `String::toInt`, a signed 32-bit
    number on the ESP32, so every id past 0x7FFFFFFF becomes that one."""
    return min(int(request.match_info["client"]), 0x7FFF_FFFF)
