from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p1evse.errors import InputRejected
from p1evse.inputs import parse_number
from p1evse.model import Rejection


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        (b"0.000", 0.0),
        (b"1.234", 1.234),
        (b"-1", -1.0),
        (b" 2.5\n", 2.5),
        (b"1e3", 1000.0),
        (b"+.5", 0.5),
    ],
)
def test_numbers(payload: bytes, value: float) -> None:
    assert parse_number(payload) == value


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Rejection.NOT_A_NUMBER),
        (b"abc", Rejection.NOT_A_NUMBER),
        (b"1,5", Rejection.NOT_A_NUMBER),
        (b"1_000", Rejection.NOT_A_NUMBER),
        (b'{"power": 1}', Rejection.NOT_A_NUMBER),
        (b"nan", Rejection.NON_FINITE),
        (b"inf", Rejection.NON_FINITE),
        (b"-Infinity", Rejection.NON_FINITE),
        (b"\xff\xfe1", Rejection.NOT_UTF8),
        (b"x" * 10_000, Rejection.TOO_LONG),
    ],
)
def test_bad_payloads_name_their_reason(payload: bytes, reason: Rejection) -> None:
    with pytest.raises(InputRejected) as caught:
        parse_number(payload)
    assert caught.value.reason is reason


def test_a_number_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(InputRejected) as caught:
        parse_number(b"1e400")
    assert caught.value.reason is Rejection.NON_FINITE


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_number_or_a_reason(payload: bytes) -> None:
    outcome: float | Rejection
    try:
        outcome = parse_number(payload)
    except InputRejected as exc:
        outcome = exc.reason
    assert isinstance(outcome, float | Rejection)
