"""Publish a finished job's Celery callback with the completion payload, once.

The callback is claimed (under a short lease) before it is published and marked sent after,
so a duplicate message finds it claimed and does nothing; only a worker lost between
publishing and marking (its lease then runs out) leads to a second publish: at least once,
never lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imageq.worker.domain import deliveries
from imageq.worker.domain.payload import completion_payload
from imageq.worker.logs import lifecycle
from imageq.worker.messages import Actions
from imageq.worker.metrics import NOTIFICATION_LAG
from imageq.worker.policy.leases import lease_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import load, log

SendCallback = Callable[[dict[str, Any], dict[str, Any]], None]
"""Publishes a callback: takes the stored signature and the payload."""


def callback(rt: Runtime, job_id: str, *, send: SendCallback) -> Actions:
    job = load(rt, job_id)
    if job is None or job.callback is None:
        return []
    lease = lease_s(rt.settings, "callback")
    claim = deliveries.claim_callback(job, now=rt.clock(), lease_s=lease)
    if claim is None or not rt.store.apply(claim):
        return []
    send(job.callback, completion_payload(job))
    task = job.callback.get("task")
    fields = lifecycle("job.callback_sent", job_id=job.job_id, batch_id=job.batch_id, task=task)
    log.info("callback of job %s sent: %s", job.job_id, task, extra=fields)
    if job.finished_at is not None:
        NOTIFICATION_LAG.labels("callback").observe(rt.clock() - job.finished_at)
    if (sent := deliveries.mark_callback(claim.applied_to(job))) is not None:
        rt.store.apply(sent)
    return []
