"""The sweeper: re-sends whatever work is overdue, so no job waits on a lost message.

Messages get lost when a worker dies holding them (countdown messages are held in worker
memory until due, and come back only after the broker's visibility timeout), when Redis
restarts, or when a producer dies between storing a job and queueing it. The in-flight index
says when each job's next piece of work is due; the sweeper takes the ones overdue by more
than `sweep.grace_s` and sends that work again. Every step is a compare-and-set, so a message
sent twice (the lost one may turn up after all) runs once: the sweeper may run beside the
normal chain and beside other sweepers.
"""

from __future__ import annotations

from imageq.worker.domain import transitions
from imageq.worker.domain.job import Delivery, Downloads, Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import (
    Actions,
    ScheduleCallback,
    ScheduleDownload,
    SchedulePoll,
    ScheduleWebhook,
    Submit,
)
from imageq.worker.metrics import SWEEPER_RESENT
from imageq.worker.runtime import Runtime
from imageq.worker.steps.finish import finish
from imageq.worker.steps.loading import log


def sweep(rt: Runtime) -> Actions:
    """One pass over the overdue jobs; returns the work to send again."""
    settings = rt.settings.sweep
    now = rt.clock()
    overdue = rt.store.due_jobs(before=now - settings.grace_s, limit=settings.batch_size)
    actions: Actions = []
    resent: list[str] = []
    for job_id, job in zip(overdue, rt.store.get_many(overdue), strict=True):
        if job is None:  # expired by its TTL, or corrupt (the store logged it): nothing to do
            rt.store.unindex(job_id)
            continue
        if (held_until := lease_end(job, now)) is not None:
            # A worker holds the work: look again the moment its lease ends, not a grace later.
            rt.store.postpone([job_id], held_until - settings.grace_s)
            continue
        actions += recover(rt, job, now)
        resent.append(job_id)
    # Not due again before another grace period: a re-sent message has time to run.
    rt.store.postpone(resent, now + settings.grace_s)
    if actions:
        log.warning("sweeper re-sent %d piece(s) of overdue work", len(actions))
        SWEEPER_RESENT.inc(len(actions))
    return actions


def lease_end(job: Job, now: float) -> float | None:
    """When the first lease on the job's pending work ends, if workers hold all of it now."""
    if job.status is JobStatus.QUEUED:
        leases = [job.submit_lease_until]
    elif job.status is JobStatus.SUBMITTED:
        leases = []  # a poll holds no lease: its token makes a re-sent copy harmless
    elif job.downloads_state == Downloads.PENDING:
        leases = [job.download_lease_until]
    else:
        leases = []
        if job.callback_state in (Delivery.PENDING, Delivery.SENDING):
            sending = job.callback_state == Delivery.SENDING
            leases.append(job.callback_lease_until if sending else 0.0)
        if job.webhook_state == Delivery.PENDING:
            leases.append(job.webhook_lease_until)
    if not leases or any(until <= now for until in leases):
        return None
    return min(leases)


def recover(rt: Runtime, job: Job, now: float) -> Actions:
    """The work a job is waiting for, to send again (nothing if someone holds a lease on it)."""
    if job.status is JobStatus.QUEUED:
        if job.held or job.submit_lease_until > now:
            return []
        return [Submit(job.job_id, job.lane)]
    if job.status is JobStatus.SUBMITTED:
        # Long past its deadline and any last check an API outage delayed: end it here rather
        # than wait for a poll to get through.
        grace_s = rt.settings.sweep.grace_s + rt.settings.retry.outage_window_s
        if (timed_out := transitions.time_out(job, now=now, grace_s=grace_s)) is not None:
            return finish(rt, job, timed_out)
        return [SchedulePoll(job.job_id, job.poll_token, 0.0)]
    if job.downloads_state == Downloads.PENDING:
        if job.download_lease_until > now:
            return []
        return [ScheduleDownload(job.job_id, job.download_attempts + 1)]
    actions: Actions = []
    callback_lost = job.callback_state == Delivery.SENDING and job.callback_lease_until <= now
    if job.callback is not None and (job.callback_state == Delivery.PENDING or callback_lost):
        actions.append(ScheduleCallback(job.job_id))
    if job.webhook_state == Delivery.PENDING and job.webhook_lease_until <= now:
        actions.append(ScheduleWebhook(job.job_id, len(job.webhook_attempts) + 1))
    if (settled := transitions.settle(job)) is not None:
        rt.store.apply(settled)
    return actions
