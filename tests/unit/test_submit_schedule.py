"""The submit schedule's pure parts: lanes, due times, and which follow-ups keep a claim."""

from __future__ import annotations

import pytest

from imageq.worker.domain.submit_schedule import (
    LANES,
    due_submits,
    keeps_claim,
    lane_of,
    split_submits,
)
from imageq.worker.messages import ScheduleCallback, SchedulePoll, Submit


def test_interactive_submits_are_claimed_before_bulk_ones() -> None:
    """The claim takes the lanes in this order."""
    assert LANES == ("interactive", "bulk")


@pytest.mark.parametrize(
    ("lane", "schedule"),
    [("bulk", "bulk"), ("interactive", "interactive"), ("", "interactive"), ("x", "interactive")],
)
def test_a_lane_submits_from_its_schedule(lane: str, schedule: str) -> None:
    """Bulk from the bulk schedule, anything else from the interactive one."""
    assert lane_of(lane) == schedule


def test_due_submits_are_grouped_by_lane_at_now_plus_countdown() -> None:
    """Each entry is due after its countdown; a negative countdown is due now."""
    due = due_submits(
        [Submit("a", "interactive", 2.5), Submit("b", "bulk"), Submit("c", "bulk", -1.0)],
        now=100.0,
    )
    assert due == {"interactive": {"a": 102.5}, "bulk": {"b": 100.0, "c": 100.0}}


def test_a_job_asked_for_twice_is_due_at_the_earlier_time() -> None:
    """Two submits of one job (a retry and the sweeper's, say) make one entry, the earlier."""
    due = due_submits([Submit("a", "bulk", 5.0), Submit("a", "bulk", 1.0)], now=10.0)
    assert due == {"bulk": {"a": 11.0}}


def test_no_submits_no_entries() -> None:
    """Nothing to schedule: no lane at all (the store then makes no call)."""
    assert due_submits([], now=1.0) == {}


def test_split_submits_keeps_the_other_follow_ups_in_order() -> None:
    """Submits go to the schedule; the rest are carried out as before, in their order."""
    poll, callback = SchedulePoll("a", 1, 2.0), ScheduleCallback("b")
    submits, rest = split_submits([poll, Submit("c", "bulk"), callback])
    assert submits == [Submit("c", "bulk")]
    assert rest == [poll, callback]


@pytest.mark.parametrize(
    ("follow_ups", "kept"),
    [
        ([Submit("a", "interactive", 3.0)], True),  # put off or retried: filed again
        ([Submit("other", "bulk")], False),  # a paced batch's next job, not this one
        ([], False),  # submitted, ended, or nothing to do
    ],
)
def test_a_claim_is_kept_only_when_its_own_job_is_filed_again(
    follow_ups: list[Submit], kept: bool
) -> None:
    """The claim's entry is replaced by the job's new one, or given up."""
    assert keeps_claim(follow_ups, "a") is kept
