"""OpenEVSE over its HTTP API, for chargers whose MQTT is off or Home Assistant-only setups.

Values go out as `POST /status {"grid_ie": W}` (plus `shaper_live_pwr` when the shaper is
fed); the stale guard's pause is a claim of our own, `POST /claims/<id>
{"state":"disabled"}`, released with `DELETE /claims/<id>` on recovery and on shutdown.

Only the newest value matters: while a request is under way, newer values replace the
waiting one instead of queueing, so a slow charger never builds a backlog and never
delays the event loop. Claims are state, not messages: a failed claim or release is
retried with backoff until the charger has it.

Whatever the charger answers is outside input: bodies are read up to a bound, and only
`GET /status` (the read-back) and `GET /config` (for `check`) are parsed, defensively. A
failed request or a refused answer is counted and logged once per kind of failure; it
never ends the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from p1evse.backoff import Backoff
from p1evse.counts import Count
from p1evse.errors import ChargerError, InputRejected
from p1evse.inputs import excerpt, load_json, one_line, read_body
from p1evse.model import GridPower, StaleAction, StaleEntered, StaleLeft
from p1evse.ratelimit import RateLimiter
from p1evse.sinks.charger import (
    MAX_ANSWER_BYTES,
    ChargerState,
    PauseIntent,
    ReportLog,
    feed_voltage,
)

if TYPE_CHECKING:
    import aiohttp

    from p1evse.sinks.charger import OpenevseSettings

log = logging.getLogger(__name__)

PAUSE = {"state": "disabled"}
NOT_FOUND = 404  # the firmware's answer about a claim it does not hold
CLOSE_TIMEOUT_S = 1.0
FAILURE_LOG_PERIOD_S = 60.0


def open_session(settings: OpenevseSettings) -> aiohttp.ClientSession:
    """An HTTP session for the charger: its login and timeout on every request."""
    import aiohttp  # only HTTP users pay for it

    headers = {}
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        headers["Authorization"] = aiohttp.encode_basic_auth(settings.username, password)
    return aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=settings.timeout)
    )


async def get_json(settings: OpenevseSettings, path: str) -> Any:
    """One GET of the charger's API (for `p1evse check`); `ChargerError` says why not."""
    url = f"{settings.url}{path}"
    async with open_session(settings) as session:
        answer = await request(session, settings, "GET", url)
    try:
        return load_json(answer, MAX_ANSWER_BYTES)
    except InputRejected as exc:
        raise ChargerError(f"GET {url}: {exc.reason.value}: {exc.detail}") from None


async def request(
    session: aiohttp.ClientSession,
    settings: OpenevseSettings,
    method: str,
    url: str,
    body: object = None,
) -> bytes:
    """One request to the charger: the answer's body (at most MAX_ANSWER_BYTES), or a
    `ChargerError` that says what failed, a refused login by name. A redirect is not
    followed (OpenEVSE's API has none; the login must not go to another host).
    OpenEVSE answers a POST or DELETE with JSON (`{"msg":"done"}`, or the values it
    took): an answer that is none (a captive portal, a router's page, a wrong host) is
    a failure, not a value or claim the charger took. A GET's answer is read by the
    caller, who refuses what it cannot read."""
    import aiohttp

    try:
        async with session.request(method, url, json=body, allow_redirects=False) as response:
            if response.status == 401:
                raise ChargerError(_refused_login(settings), status=401)
            if 300 <= response.status < 400:
                raise ChargerError(
                    f"{method} {url}: HTTP {response.status}, a redirect: not followed",
                    response.status,
                )
            if response.status == NOT_FOUND:
                # OpenEVSE's "no such claim" is JSON; another server's 404 page is no
                # answer of the charger's (a claim taken as gone would never be released)
                answer = await read_body(response, MAX_ANSWER_BYTES)
                if not _is_json(answer):
                    raise ChargerError(
                        f"{method} {url}: HTTP 404, but the answer is no JSON, so not "
                        f"OpenEVSE's (is openevse.url the charger?): {excerpt(answer)}"
                    )
            if response.status >= 400:
                raise ChargerError(f"{method} {url}: HTTP {response.status}", response.status)
            answer = await read_body(response, MAX_ANSWER_BYTES)
            if method != "GET" and not _is_json(answer):
                raise ChargerError(
                    f"{method} {url}: HTTP {response.status}, but the answer is no JSON, "
                    f"so not OpenEVSE's (is openevse.url the charger?): {excerpt(answer)}"
                )
            return answer
    except InputRejected as exc:
        raise ChargerError(f"{method} {url}: {exc.detail}") from None
    except aiohttp.ClientError as exc:
        raise ChargerError(f"{method} {url}: {one_line(str(exc)) or type(exc).__name__}") from None
    except TimeoutError:
        raise ChargerError(f"{method} {url}: no answer within {settings.timeout:g} s") from None


def _is_json(answer: bytes) -> bool:
    try:
        load_json(answer, MAX_ANSWER_BYTES)
    except InputRejected:
        return False
    return True


def _refused_login(settings: OpenevseSettings) -> str:
    return (
        f"OpenEVSE at {settings.url} refused the login (HTTP 401): "
        "check openevse.username and openevse.password"
    )


class OpenEvseHttpSink:
    def __init__(
        self,
        settings: OpenevseSettings,
        charger: ChargerState,
        clock: Callable[[], float],
        backoff: Backoff | None = None,
    ) -> None:
        self._settings = settings
        self.charger = charger
        self._clock = clock
        self.pause = PauseIntent(charger, clock)
        self._backoff = backoff or Backoff(initial=1.0, cap=30.0)
        self._claim_url = f"{settings.url}/claims/{settings.claim_client_id}"
        self._status_url = f"{settings.url}/status"
        self._waiting_value: GridPower | None = None
        self._value_due = asyncio.Event()
        self._claim_due = asyncio.Event()  # the pause wanted may differ from the one held
        # a claim of ours the charger may hold from an earlier run is looked for first,
        # and kept until a fresh value (`_inherited`)
        self._leftover_checked = False
        self._inherited = False
        self._claim_due.set()
        self._session: aiohttp.ClientSession | None = None
        # the failure of each kind of request ("POST /status"), until one is answered
        self._failing: dict[str, str] = {}
        self._report_log = ReportLog(clock)
        self._failure_log = RateLimiter(FAILURE_LOG_PERIOD_S, clock)
        self.failures = 0
        self.sent: list[Callable[[GridPower], None]] = []  # told of each value answered
        # told what fails while requests fail ("; "-joined, by kind), None once none does
        self.failing: list[Callable[[str | None], None]] = []

    def counts(self) -> list[Count]:
        return [
            Count(
                "charger_request_failures",
                "Requests to the charger's HTTP API that failed: no answer, or an HTTP error",
                self.failures,
            )
        ]

    @property
    def claim_sent(self) -> bool:
        return self.pause.held

    def grid_power(self, value: GridPower) -> None:
        self._waiting_value = value
        self._value_due.set()
        if self._inherited and not value.failsafe:  # fresh: the earlier run's pause goes
            self._inherited = False
            self.pause.stale = False
            self._claim_due.set()

    def stale_entered(self, event: StaleEntered) -> None:
        self._inherited = False  # the pause is this run's own now, or not wanted
        if event.action is StaleAction.PAUSE:
            self.pause.stale = True
            self._claim_due.set()

    def stale_left(self, event: StaleLeft) -> None:
        self._inherited = False
        self.pause.stale = False
        self._claim_due.set()

    async def run(self) -> None:
        async with open_session(self._settings) as session:
            self._session = session
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._serve_values(), name="openevse-http-feed")
                    group.create_task(self._serve_claims(), name="openevse-http-claims")
                    group.create_task(self._poll(), name="openevse-http-status")
            finally:
                self._session = None

    async def close(self) -> None:
        """Release our claim before the process goes (bounded: shutdown takes < 2 s),
        unless the meter is silent: released, the charger would charge on at its last
        rate, fed by no one. The next run finds the claim and releases it once its
        readings are fresh."""
        if self.pause.stale and self.claim_sent:
            log.warning(
                "stopping while the meter is silent: the charger stays paused (%s); the "
                "next run of p1evse releases it once its readings are fresh",
                self._claim_url,
            )
            return
        self.pause.stale = False
        if self._session is None or not self.claim_sent:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._sync_claim()
        except ChargerError as exc:
            log.warning("could not release the claim on %s: %s", self._claim_url, exc)
        except TimeoutError:
            log.warning(
                "could not release the claim on %s: no answer within %g s",
                self._claim_url,
                CLOSE_TIMEOUT_S,
            )

    async def _serve_values(self) -> None:
        """The newest value, as values come: one that waits is superseded by the next,
        and none waits for a claim (a failed request is counted and reported by
        `_request`)."""
        while True:
            await self._value_due.wait()
            self._value_due.clear()
            value, self._waiting_value = self._waiting_value, None
            if value is not None:
                with contextlib.suppress(ChargerError):
                    await self._post_status(value)

    async def _serve_claims(self) -> None:
        """The pause claim as it is wanted, beside the values: a pause is never held up
        by a value the charger is slow to take. One that fails is tried again after a
        backoff."""
        loop = asyncio.get_running_loop()
        retry: asyncio.TimerHandle | None = None  # a failed claim's backoff, while it runs

        def retry_due() -> None:
            nonlocal retry
            retry = None
            self._claim_due.set()

        try:
            while True:
                await self._claim_due.wait()
                self._claim_due.clear()
                if not self._claim_unsettled():
                    self._claims_moot()
                    continue
                if retry is not None:
                    continue
                with contextlib.suppress(ChargerError):
                    await self._settle_claim()
                if self._claim_unsettled():
                    retry = loop.call_later(self._backoff.next_delay(), retry_due)
                else:
                    self._backoff.reset()
        finally:
            if retry is not None:
                retry.cancel()

    def _claim_unsettled(self) -> bool:
        return not self._leftover_checked or self.pause.wanted() != self.claim_sent

    def _claims_moot(self) -> None:
        """A claim request that failed is not failing any more once the claim is as
        wanted without it (the pause came and went while the charger did not answer):
        no request of that kind is to be sent, so none will answer it."""
        path = self._claim_url.removeprefix(str(self._settings.url))
        moot = [kind for kind in self._failing if kind.partition(" ")[2] == path]
        for kind in moot:
            del self._failing[kind]
        if moot:
            self._tell_failing()

    async def _poll(self) -> None:
        """Read the charger back: what the car draws, the divert mode (normal mode is
        never paused), the state."""
        while True:
            try:
                answer = await self._request("GET", self._status_url)
            except ChargerError:
                pass  # counted and reported
            else:
                self._read_back(answer)
            if self.pause.wanted() != self.claim_sent:  # a mode changed, or a report aged
                self._claim_due.set()
            await asyncio.sleep(self._settings.poll_interval)

    def _read_back(self, answer: bytes) -> None:
        try:
            self.charger.update_all(answer, self._clock())
        except InputRejected as exc:
            self._report_log.refused(exc, self._status_url)

    async def _settle_claim(self) -> None:
        """The look for an old claim first; but a pause wanted now goes out even while
        that look fails (a charger that refuses `GET /claims` must still be paused)."""
        if not self._leftover_checked:
            try:
                await self._release_leftover()
            except ChargerError:
                if not self.pause.wanted():
                    raise
        await self._sync_claim()

    async def _release_leftover(self) -> None:
        """A run that died, or stopped while its meter was silent, left the charger
        paused: the claim is ours, kept until a fresh value releases it (the meter may
        still be silent: released, the charger would charge on at its last rate)."""
        try:
            await self._request("GET", self._claim_url)
        except ChargerError as exc:
            if exc.status != NOT_FOUND:  # the charger holds no claim of ours
                raise
        else:
            self.pause.claimed(True)
            if not self.pause.stale:
                self._inherited = self.pause.stale = True
                log.warning(
                    "the charger holds the pause claim an earlier run left on %s; released "
                    "once readings are fresh",
                    self._claim_url,
                )
        self._leftover_checked = True

    async def _sync_claim(self) -> None:
        wanted = self.pause.wanted()
        if wanted and not self.claim_sent:
            await self._request("POST", self._claim_url, PAUSE)
            self.pause.claimed(True)
            log.warning("paused charging: claimed %s %s", self._claim_url, json.dumps(PAUSE))
        elif not wanted and self.claim_sent:
            try:
                await self._request("DELETE", self._claim_url)
            except ChargerError as exc:
                if exc.status != NOT_FOUND:  # a charger that restarted holds no claims
                    raise
            self.pause.claimed(False)
            log.info("released the pause claim on %s", self._claim_url)

    async def _post_status(self, value: GridPower) -> None:
        body: dict[str, Any] = {"grid_ie": value.watts}
        if self._settings.shaper:
            body["shaper_live_pwr"] = value.watts
        if self._settings.voltage:
            volts = feed_voltage(value)
            if volts is not None:
                body["voltage"] = volts
        await self._request("POST", self._status_url, body)
        for listener in self.sent:
            listener(value)

    async def _request(self, method: str, url: str, body: object = None) -> bytes:
        if self._session is None:
            raise ChargerError(f"{method} {url}: the sink is not running")
        kind = f"{method} {url.removeprefix(str(self._settings.url))}"
        try:
            answer = await request(self._session, self._settings, method, url, body)
        except ChargerError as exc:
            if exc.status == NOT_FOUND and url == self._claim_url:
                self._answered(kind)  # an answer: the charger holds no claim of ours
            else:
                self._failed(kind, exc)
            raise
        self._answered(kind)
        return answer

    def _failed(self, kind: str, failure: ChargerError) -> None:
        self.failures += 1
        if self._failing.get(kind) != str(failure):
            self._failing[kind] = str(failure)
            self._tell_failing()
        self._report(kind, failure)

    def _answered(self, kind: str) -> None:
        """A kind of request that failed is answered again: said once per recovery."""
        if self._failing.pop(kind, None) is not None:
            log.info("OpenEVSE at %s answers %s again", self._settings.url, kind)
            self._tell_failing()

    def _tell_failing(self) -> None:
        failing = "; ".join(self._failing.values()) or None
        for listener in self.failing:
            listener(failing)

    def _report(self, kind: str, failure: ChargerError) -> None:
        """Log a failure at most once a minute per kind of request and HTTP status, a
        refused login once for all (the charger's answers are outside input: failures
        taking turns, or whose text quotes what the charger sent, never flood the log)."""
        refused_login = failure.status == 401
        more = self._failure_log.note((None if refused_login else kind, failure.status))
        if more is None:
            log.debug("%s", failure)
            return
        level = logging.ERROR if refused_login else logging.WARNING
        log.log(level, "%s%s", failure, more)
