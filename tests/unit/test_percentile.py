"""The one nearest-rank percentile (`imageq.worker.policy.adaptive.percentile`)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from imageq.worker.policy.adaptive import percentile


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([7.0], 99, 7.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0], 50, 1.0),
        ([1.0, 2.0], 51, 2.0),
        ([float(n) for n in range(1, 11)], 99, 10.0),
        ([float(n) for n in range(1, 11)], 10, 1.0),
        ([4.0, 9.0], 100, 9.0),
        ([5.0, 5.0, 1.0], 0.1, 1.0),
    ],
)
def test_nearest_rank_is_one_of_the_values(
    values: list[float], pct: float, expected: float
) -> None:
    """The smallest value with at least pct % of the values at or below it."""
    assert percentile(values, pct) == expected


@pytest.mark.parametrize("values", [[], ()])
def test_no_values_is_an_error(values: Sequence[float]) -> None:
    """A percentile of nothing is undefined: callers say what none means (None, NaN)."""
    with pytest.raises(ValueError, match="no samples"):
        percentile(values, 50)
