"""Reading the job a step works on, and the steps' logger: a record that is gone or corrupt
drops the message, logged."""

from __future__ import annotations

import logging

from imageq.worker.domain.job import Job
from imageq.worker.errors import CorruptRecord, JobNotFound
from imageq.worker.logs import bind_job
from imageq.worker.runtime import Runtime

log = logging.getLogger("imageq.worker.steps")


def load(rt: Runtime, job_id: str) -> Job | None:
    """The job, or None (logged) if its record is gone or corrupt: the message is then dropped,
    and a corrupt record leaves the indexes, so no sweep or poller sends it here again."""
    try:
        job = rt.store.get(job_id)
    except JobNotFound:
        log.warning("job %s has no record (expired or never created); message dropped", job_id)
        return None
    except CorruptRecord as error:
        rt.store.skip_corrupt(error)
        return None
    bind_job(job.job_id, remote_task_id=job.remote_task_id, batch_id=job.batch_id)
    return job
