"""The submit schedule's pure parts (poller mode): which lane's schedule a submit goes in, the
order the lanes are claimed in, and when each scheduled submit is due.

In poller mode a submit is an entry in a sorted set per lane (job id scored by when it is
due), not a task message; the poller claims due entries as it claims polls
(`WorkIndexes.claim_due`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from imageq.worker.messages import Actions, Submit

LANES: Final = ("interactive", "bulk")
"""Claimed in this order: bulk submits get the room interactive ones leave, as a worker with
both submit queues lets interactive jobs by a bulk run's backlog."""


def lane_of(lane: str) -> str:
    """The schedule a job's lane submits from: bulk, or interactive for anything else (the
    queue `messages.message` picks for it likewise)."""
    return "bulk" if lane == "bulk" else "interactive"


def due_submits(submits: Iterable[Submit], *, now: float) -> dict[str, dict[str, float]]:
    """Lane -> {job id: when due}, for the schedule's entries; a job asked for twice is due at
    the earlier time."""
    due: dict[str, dict[str, float]] = {}
    for submit in submits:
        entries = due.setdefault(lane_of(submit.lane), {})
        at = now + max(0.0, submit.countdown_s)
        entries[submit.job_id] = min(at, entries.get(submit.job_id, at))
    return due


def split_submits(actions: Actions) -> tuple[list[Submit], Actions]:
    """A step's follow-ups: the submits (for the schedule) and the rest."""
    submits = [action for action in actions if isinstance(action, Submit)]
    return submits, [action for action in actions if not isinstance(action, Submit)]


def keeps_claim(submits: Iterable[Submit], job_id: str) -> bool:
    """Whether a claimed submit's follow-ups schedule the job's submit again (their entry then
    replaces the claim's lease); otherwise the claim is given up."""
    return any(submit.job_id == job_id for submit in submits)
