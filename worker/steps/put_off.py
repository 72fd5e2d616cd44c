"""Requests the budget or a pause on 429 puts off: never dropped, never a failure, and no
worker slot sleeps for them. A submit goes back to its queue with a countdown to its turn; a
poll moves later (a new token, the same facts), and a poll a pause delayed moves its job's
deadline too, up to `budget.max_deadline_extension_s` in all."""

from __future__ import annotations

from dataclasses import replace

from imageq.worker.domain import submits
from imageq.worker.domain.job import Job, JobFields
from imageq.worker.domain.status import JobStatus
from imageq.worker.domain.transitions import Transition
from imageq.worker.messages import Actions, PollFacts, SchedulePoll, Submit
from imageq.worker.metrics import DEADLINE_EXTENSION_SECONDS
from imageq.worker.policy.request_budget import Grant, deadline_extension_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import load

# While another worker's probe is out, ask again this often (a probe takes milliseconds; its
# lease, `budget.probe_lease_s`, only covers a probe whose worker died).
_PROBE_RECHECK_S = 0.2


def put_off_s(rt: Runtime, grant: Grant) -> float:
    """The countdown before asking again: at a booked turn exactly; spread out otherwise, so
    those put off together do not all come back at once; never past one countdown."""
    budget = rt.settings.budget
    match grant.reason:
        case "booked":
            wait_s = grant.wait_s
        case "probe":
            wait_s = min(grant.wait_s, _PROBE_RECHECK_S) * (1 + rt.rand())
        case "pause":
            wait_s = grant.wait_s + _PROBE_RECHECK_S * rt.rand()
        case _:
            # The script told it its place in the waiting line; a little spread on top.
            wait_s = grant.wait_s + rt.rand() * budget.horizon_s / 4
    return min(wait_s, rt.settings.worker.max_countdown_s)


def put_off_submit(rt: Runtime, job: Job, grant: Grant) -> Actions:
    """The submit stays queued: the same message again, after its countdown, and the job due
    then (so the sweeper does not send copies of a submit that is only waiting its turn)."""
    delay_s = put_off_s(rt, grant)
    now = rt.clock()
    waiting = Transition(
        job.job_id,
        expect={"status": JobStatus.QUEUED, "submit_attempts": job.submit_attempts},
        changes={"updated_at": now},
        due_at=now + delay_s,
    )
    if not rt.store.apply(waiting):
        return []
    return [Submit(job.job_id, job.lane, countdown_s=delay_s)]


def put_back_submit(rt: Runtime, claimed: Job, grant: Grant, *, sent_until: float) -> Actions:
    """The submit was claimed, but its turn had passed by the time it was ready to go and the
    budget has no turn now: give the claim back and wait for the new turn, as above."""
    delay_s = put_off_s(rt, grant)
    now = rt.clock()
    release = submits.release_claim(
        claimed,
        now=now,
        sent_until=sent_until,
        due_at=now + delay_s,
        free_slot=bool(rt.settings.limits.max_in_flight),
    )
    if not rt.store.apply(release):
        return []
    return [Submit(claimed.job_id, claimed.lane, countdown_s=delay_s)]


def put_off_poll(rt: Runtime, job_id: str, token: int, facts: PollFacts, grant: Grant) -> Actions:
    """Move the poll later (not counted as a poll); a pause moves the deadline with it."""
    delay_s = put_off_s(rt, grant)
    now = rt.clock()
    changes: JobFields = {"poll_token": token + 1, "next_poll_at": now + delay_s}
    extra_s = 0.0
    if grant.reason in ("pause", "probe"):
        job = load(rt, job_id)
        if job is None or job.status is not JobStatus.SUBMITTED or job.poll_token != token:
            return []
        extra_s = deadline_extension_s(
            delay_s,
            extended_s=job.deadline_extended_s,
            cap_s=rt.settings.budget.max_deadline_extension_s,
        )
        if extra_s > 0:
            facts = replace(facts, deadline_at=facts.deadline_at + extra_s)
            changes["deadline_at"] = facts.deadline_at
            changes["deadline_extended_s"] = job.deadline_extended_s + extra_s
    moving = Transition(
        job_id,
        expect={"status": JobStatus.SUBMITTED, "poll_token": token},
        changes=changes,
        due_at=now + delay_s,
        then=(SchedulePoll(job_id, token + 1, delay_s, facts),),
    )
    if not rt.store.apply(moving):
        return []
    DEADLINE_EXTENSION_SECONDS.inc(extra_s)
    return moving.follow_ups()
