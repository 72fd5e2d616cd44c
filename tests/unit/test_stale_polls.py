"""Which poll messages check their token before asking the API: the pure decision."""

from __future__ import annotations

import pytest

from imageq.worker.policy.stale_polls import may_be_stale

DUE = 1_800_000_000.0
GRACE_S = 15.0


@pytest.mark.parametrize(
    ("redelivered", "retries", "due_at", "now", "stale"),
    [
        (False, 0, DUE, DUE + 0.3, False),
        (False, 0, DUE, DUE - 2.0, False),
        (False, 0, DUE, DUE + GRACE_S / 2 - 0.01, False),
        (False, 0, DUE, DUE + GRACE_S / 2, True),
        (False, 0, DUE, DUE + GRACE_S + 1, True),
        (True, 0, DUE, DUE + 0.3, True),
        (False, 1, DUE, DUE + 0.3, True),
        (False, 0, None, DUE, True),
    ],
    ids=[
        "on-time",
        "early",
        "late-within-half-the-grace",
        "half-the-grace-late",
        "past-the-grace",
        "redelivered",
        "retried",
        "no-due-time",
    ],
)
def test_only_a_first_delivery_on_time_skips_the_check(
    redelivered: bool, retries: int, due_at: float | None, now: float, stale: bool
) -> None:
    """A redelivered, retried, late or undated message may hold an old token: it is checked."""
    decided = may_be_stale(
        redelivered=redelivered, retries=retries, due_at=due_at, now=now, grace_s=GRACE_S
    )
    assert decided is stale
