"""The chart's ring buffer: one bucket per step, the last hour, fixed memory."""

from __future__ import annotations

import pytest

from p1evse.status.history import History, Intervals, Row


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


def test_the_day_store_keeps_a_minute_a_bucket_in_a_few_tens_of_kilobytes() -> None:
    day = History(span_s=86_400, step_s=60)
    assert day.size == 1440
    for second in range(120):
        day.add_meter(second, 100.0 if second < 60 else 300.0)
    day.add_published(30, -5)
    day.add_charger(90, 6.5)
    assert day.rows() == [Row(0, 100, -5), Row(60, 300, None, 6.5)]
    arrays = [value for value in vars(day).values() if hasattr(value, "buffer_info")]
    held = sum(len(a) * a.itemsize for a in arrays)
    assert held <= 28 * 1440 < 45_000  # flat arrays: 28 bytes a minute


def test_intervals_keep_the_last_few_periods() -> None:
    periods = Intervals(keep=2)
    assert periods.periods() == []
    assert not periods.open
    periods.begin(1.0)
    periods.begin(2.0)  # it lasts already: no new one
    assert periods.open
    assert periods.periods() == [(1.0, None)]
    periods.end(3.0)
    periods.end(4.0)  # over already
    assert periods.periods() == [(1.0, 3.0)]
    for start in (10.0, 20.0):
        periods.begin(start)
        periods.end(start + 1)
    assert periods.periods() == [(10.0, 11.0), (20.0, 21.0)]  # the oldest is gone
    with pytest.raises(ValueError, match="keep"):
        Intervals(0)
