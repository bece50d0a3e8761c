"""The chart's ring buffer: one bucket per step, the last hour, fixed memory."""

from __future__ import annotations

import pytest

from p1evse.status.history import History, Row


def test_readings_in_one_bucket_are_averaged_and_the_last_value_sent_wins() -> None:
    history = History(span_s=10, step_s=1)
    history.add_meter(5.1, 100)
    history.add_meter(5.6, 300)
    history.add_published(5.2, -10)
    history.add_published(5.9, 250)
    history.add_meter(6.0, 50)
    assert history.rows() == [Row(5, 200, 250), Row(6, 50, None)]


def test_only_the_span_is_kept_and_old_slots_are_reused() -> None:
    history = History(span_s=10, step_s=1)
    for t in range(25):
        history.add_meter(t + 0.5, t)
    rows = history.rows()
    assert [row.at for row in rows] == list(range(15, 25))
    assert [row.meter_w for row in rows] == list(range(15, 25))
    assert history.size == 10


def test_gaps_leave_no_rows_and_rows_since_a_bucket() -> None:
    history = History(span_s=10, step_s=2)
    history.add_meter(0, 1)
    history.add_meter(9, 2)
    history.add_published(9.5, 3)
    assert history.rows() == [Row(0, 1, None), Row(8, 2, 3)]
    assert history.rows(since=history.bucket(9)) == [Row(8, 2, 3)]
    assert History().rows() == []


def test_a_value_older_than_the_span_is_ignored() -> None:
    history = History(span_s=10, step_s=1)
    history.add_meter(100, 1)
    history.add_meter(85, 2)  # would overwrite the slot of a newer bucket
    history.add_meter(95, 3)
    assert history.rows() == [Row(95, 3, None), Row(100, 1, None)]


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError, match="step_s"):
        History(span_s=1, step_s=0)
