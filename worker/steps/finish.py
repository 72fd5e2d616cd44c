"""The end of a job: one terminal transition, then saving outputs, then the notifications."""

from __future__ import annotations

from typing import Any

from imageq.worker.domain.job import Delivery, Downloads, Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import (
    Actions,
    BatchFinished,
    ScheduleCallback,
    ScheduleDownload,
    ScheduleWebhook,
)
from imageq.worker.metrics import JOBS_FINISHED, POLLS_PER_JOB, TIME_TO_COMPLETION
from imageq.worker.policy.polling import Finish
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import log


def finish(
    rt: Runtime, job: Job, step: Finish, *, expect: dict[str, Any], poll_count: int | None = None
) -> Actions:
    """Move the job to its terminal status; only the winner of the CAS gets the follow-ups."""
    saving = (
        rt.storage is not None and step.status is JobStatus.SUCCEEDED and bool(step.output_urls)
    )
    now = rt.clock()
    changes = terminal_changes(job, step, now=now, saving=saving)
    if poll_count is not None:
        changes["poll_count"] = poll_count
    write = rt.store.update(
        job.job_id, expect=expect, changes=changes, free_slot=True, **work_left(job, saving, now)
    )
    if not write:
        return []
    log.info("job %s finished: %s", job.job_id, step.status)
    JOBS_FINISHED.labels(str(step.status)).inc()
    POLLS_PER_JOB.observe(changes.get("poll_count", job.poll_count))
    TIME_TO_COMPLETION.observe(now - job.created_at)
    return after_finish(job, batch_complete=write.batch_complete, saving=saving)


def terminal_changes(job: Job, step: Finish, *, now: float, saving: bool) -> dict[str, Any]:
    """The record's changes when a job ends (by a poll, a final error, or a cancel)."""
    width, height = job.generation_params.size
    return {
        "status": step.status,
        "finished_at": now,
        "outputs": [{"url": url, "width": width, "height": height} for url in step.output_urls],
        "error": step.error,
        "next_poll_at": None,
        "downloads_state": Downloads.PENDING if saving else Downloads.NONE,
        "callback_state": Delivery.PENDING if job.callback else Delivery.NONE,
        "webhook_state": Delivery.PENDING if job.webhook_url else Delivery.NONE,
        "webhook_next_at": now if job.webhook_url else None,
    }


def work_left(job: Job, saving: bool, now: float) -> dict[str, Any]:
    """Index arguments for the write that ends a job: due now if outputs or notifications are
    still to go out, settled otherwise."""
    if saving or job.callback is not None or job.webhook_url is not None:
        return {"due_at": now}
    return {"settled": True}


def after_finish(job: Job, *, batch_complete: bool, saving: bool) -> Actions:
    """The follow-ups of the one write that ended a job."""
    batch: Actions = [BatchFinished(job.batch_id)] if batch_complete and job.batch_id else []
    if saving:
        return [ScheduleDownload(job.job_id, attempt=1), *batch]
    return [*notifications(job), *batch]


def notifications(job: Job) -> Actions:
    """What goes out once a finished job's outputs are settled: its callback and its webhook."""
    actions: Actions = []
    if job.callback is not None:
        actions.append(ScheduleCallback(job.job_id))
    if job.webhook_url is not None:
        actions.append(ScheduleWebhook(job.job_id, attempt=1))
    return actions
