"""The end of a job: carry out its one terminal transition; only its winner gets the follow-ups."""

from __future__ import annotations

from imageq.worker.domain.job import Job
from imageq.worker.domain.transitions import Transition
from imageq.worker.logs import lifecycle
from imageq.worker.messages import Actions, Submit
from imageq.worker.metrics import CREDITS_USED, JOBS_FINISHED, POLLS_PER_JOB, TIME_TO_COMPLETION
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import log


def finish(rt: Runtime, job: Job, ending: Transition | None) -> Actions:
    """Apply `ending` (a transition that ends `job`, as read; None if refused) and return the
    saving of outputs or the notifications that follow, with the batch's end if it was last."""
    if ending is None:
        return []
    write = rt.store.apply(ending)
    if not write:
        return []
    status = ending.changes.get("status")
    finished_at = ending.changes.get("finished_at") or rt.clock()
    error = ending.changes.get("error") or {}
    ids = {"job_id": job.job_id, "batch_id": job.batch_id, "remote_task_id": job.remote_task_id}
    fields = lifecycle("job.finished", **ids, status=status, reason=error.get("message"))
    log.info("job %s finished: %s", job.job_id, status, extra=fields)
    JOBS_FINISHED.labels(str(status)).inc()
    POLLS_PER_JOB.observe(ending.changes.get("poll_count", job.poll_count))
    TIME_TO_COMPLETION.observe(finished_at - job.created_at)
    credits = ending.changes.get("credits_used")
    if credits is not None:
        params = job.generation_params
        CREDITS_USED.labels(params.quality, params.resolution).inc(credits)
        window = rt.settings.cost.sample_window
        rt.store.add_credit_sample(params.quality, params.resolution, credits, window=window)
    released: Actions = [Submit(job_id, lane) for job_id, lane in write.released]  # paced batch
    return ending.follow_ups(batch_complete=write.batch_complete) + released
