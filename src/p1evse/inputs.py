"""Turning bytes from outside (MQTT payloads, HTTP answers) into values, defensively:
bounded size, strict UTF-8, JSON without duplicate keys, plain decimal numbers.
Whatever is refused raises `InputRejected` with the counted reason.

Shared by the sources (meter payloads) and the sinks (what the charger answers), which
never import each other.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from p1evse.errors import InputRejected
from p1evse.model import Rejection

if TYPE_CHECKING:
    import aiohttp

# A plain decimal number: what meters and DSMR-reader publish. Deliberately stricter
# than float(), which also takes "1_000", "nan", "infinity" and surrounding junk.
_NUMBER = re.compile(rb"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
MAX_NUMBER_BYTES = 64
# W per unit of a power value: the sources' `unit` and a telegram line's own (a refusal
# names them in this order)
UNIT_FACTORS = {"kW": 1000.0, "W": 1.0}
_MISSING = object()


def parse_number(payload: bytes | bytearray) -> float:
    """The number a payload holds."""
    if len(payload) > MAX_NUMBER_BYTES:
        raise InputRejected(Rejection.TOO_LONG, f"{len(payload)} bytes")
    if _NUMBER.fullmatch(payload):
        value = float(payload)
        if not math.isfinite(value):  # 400 digits are a number too big for a float
            raise InputRejected(Rejection.NON_FINITE, f"{bytes(payload[:32])!r}")
        return value
    text = decode(payload)
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not math.isfinite(value):
        raise InputRejected(Rejection.NON_FINITE, repr(text[:32]))
    raise InputRejected(Rejection.NOT_A_NUMBER, repr(text[:32]))


def decode(payload: bytes | bytearray) -> str:
    try:
        return bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise InputRejected(Rejection.NOT_UTF8, repr(bytes(payload[:32]))) from None


def load_json(payload: bytes | bytearray, max_bytes: int) -> Any:
    """The JSON document a payload holds."""
    if len(payload) > max_bytes:
        raise InputRejected(Rejection.TOO_LONG, f"{len(payload)} bytes, more than {max_bytes}")
    text = decode(payload)
    try:
        return json.loads(text, object_pairs_hook=_object)
    except (ValueError, RecursionError) as exc:  # deep nesting: RecursionError
        raise InputRejected(Rejection.BAD_JSON, str(exc)[:80]) from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is refused (which one would be meant?)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:32]!r}")
            seen.add(key)
    return document


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path (`SML.pwr_imp`; a number picks a list item), or
    `_MISSING`."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict):
            node = node.get(key, _MISSING)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            node = _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def number_at(document: Any, path: str) -> float:
    """The number at a dotted path; a JSON string holding a plain number counts."""
    value = lookup(document, path)
    if value is _MISSING or value is None:
        raise InputRejected(Rejection.MISSING_FIELD, f"no field {path!r}")
    return to_number(value, path)


def to_number(value: Any, name: str) -> float:
    """A finite number from a JSON value: a number, or a string holding one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputRejected(Rejection.NOT_A_NUMBER, f"{name} = {json.dumps(value)[:32]}")
    if isinstance(value, str):
        try:
            return parse_number(value.encode())
        except InputRejected as exc:
            raise InputRejected(exc.reason, f"{name} = {exc.detail}") from None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        number = math.inf
    if not math.isfinite(number):  # json.loads takes NaN and Infinity
        raise InputRejected(Rejection.NON_FINITE, f"{name} = {str(value)[:32]}")
    return number


EXCERPT_BYTES = 48  # of a payload refused, in the log
ONE_LINE_CHARS = 160  # of an error's text, in the log


def excerpt(payload: bytes | bytearray) -> str:
    """The start of `payload` for a log line: quoted, every byte that is not printable
    ASCII escaped (no line end, no terminal control), `…` where it goes on."""
    more = "…" if len(payload) > EXCERPT_BYTES else ""
    return repr(bytes(payload[:EXCERPT_BYTES]))[1:] + more


def one_line(text: str, limit: int = ONE_LINE_CHARS) -> str:
    """`text` with its line ends and runs of blanks as single spaces (aiohttp spreads
    some of its errors over lines), cut at `limit` characters with `…` (an error can
    quote what a server sent, a kilobyte of it)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "…"


async def read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """An HTTP answer's body, refused once it grows past `max_bytes`."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(16_384):
        body += chunk
        if len(body) > max_bytes:
            raise InputRejected(Rejection.TOO_LONG, f"answer over {max_bytes} bytes")
    return bytes(body)
