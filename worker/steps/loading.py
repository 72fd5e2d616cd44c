"""Helpers every step shares."""

from __future__ import annotations

import logging

from imageq.worker.domain.job import Job
from imageq.worker.errors import JobNotFound
from imageq.worker.logs import bind_job
from imageq.worker.runtime import Runtime

log = logging.getLogger("imageq.worker.steps")


def load(rt: Runtime, job_id: str) -> Job | None:
    """The job, or None (logged) if its record is gone: the message is then dropped."""
    try:
        job = rt.store.get(job_id)
    except JobNotFound:
        log.warning("job %s has no record (expired or never created); message dropped", job_id)
        return None
    bind_job(job.job_id, remote_task_id=job.remote_task_id, batch_id=job.batch_id)
    return job
