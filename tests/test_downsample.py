"""The downsampler of `simulate --plot` (p1evse.sim.downsample): what it keeps of a
series for a picture so many pixel columns wide."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.sim.downsample import extremes

values = st.one_of(st.none(), st.floats(-1e4, 1e4, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(
    ys=st.lists(values, min_size=1, max_size=600),
    columns=st.integers(1, 80),
    spacing=st.sampled_from([1.0, 0.5, 7.0]),
)
def test_every_columns_extremes_survive_and_the_output_is_bounded(
    ys: list[float | None], columns: int, spacing: float
) -> None:
    xs = [i * spacing for i in range(len(ys))]
    kept = extremes(xs, ys, columns)
    assert kept == sorted(set(kept))
    if len(ys) <= 5 * columns:
        assert kept == list(range(len(ys)))
    assert len(kept) <= max(len(ys) if len(ys) <= 5 * columns else 0, 5 * columns)
    assert kept[0] == 0
    assert kept[-1] == len(ys) - 1
    span = (xs[-1] - xs[0]) or 1.0
    column = [min(int((x - xs[0]) / span * columns), columns - 1) for x in xs]
    for c in set(column):
        inside = [i for i in range(len(ys)) if column[i] == c]
        kept_inside = [i for i in kept if column[i] == c]
        numbers = [ys[i] for i in inside if ys[i] is not None]
        kept_numbers = [ys[i] for i in kept_inside if ys[i] is not None]
        if numbers:
            assert min(numbers) in kept_numbers
            assert max(numbers) in kept_numbers
        if any(ys[i] is None for i in inside):
            assert any(ys[i] is None for i in kept_inside)  # a gap stays a gap


def test_few_samples_are_all_kept_and_bad_arguments_refused() -> None:
    assert extremes([0.0, 1.0, 2.0], [1.0, None, 3.0], 1) == [0, 1, 2]
    with pytest.raises(ValueError, match="3 times for 2 values"):
        extremes([0.0, 1.0, 2.0], [1.0, 2.0], 10)
    with pytest.raises(ValueError, match="columns 0"):
        extremes([0.0], [1.0], 0)
