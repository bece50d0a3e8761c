"""Turning an MQTT payload into a number, or a counted reason why not."""

from __future__ import annotations

import math
import re

from p1evse.model import Rejection

# A plain decimal number: what meters and DSMR-reader publish. Deliberately stricter
# than float(), which also takes "1_000", "nan", "infinity" and surrounding junk.
_NUMBER = re.compile(rb"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
MAX_PAYLOAD_BYTES = 64
UNIT_FACTORS = {"W": 1.0, "kW": 1000.0}


class PayloadError(ValueError):
    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_number(payload: bytes | bytearray) -> float:
    """The number a payload holds; `PayloadError` names why a payload holds none."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(Rejection.TOO_LONG, f"{len(payload)} bytes")
    if _NUMBER.fullmatch(payload):
        return float(payload)
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(Rejection.NOT_UTF8, repr(payload[:32])) from None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not math.isfinite(value):
        raise PayloadError(Rejection.NON_FINITE, repr(text))
    raise PayloadError(Rejection.NOT_A_NUMBER, repr(text[:32]))
