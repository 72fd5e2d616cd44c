"""Publish a finished job's Celery callback with the completion payload."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.job import Delivery
from worker.payload import completion_payload
from worker.runtime import Runtime
from worker.steps.actions import Actions
from worker.steps.common import load

SendCallback = Callable[[dict[str, Any], dict[str, Any]], None]
"""Publishes a callback: takes the stored signature and the payload."""


def callback(rt: Runtime, job_id: str, *, send: SendCallback) -> Actions:
    """Published first, marked after: a crash in between repeats the callback rather than
    losing it. Only one callback message exists per job (from the terminal transition).
    """
    job = load(rt, job_id)
    if job is None or job.callback_state != Delivery.PENDING or job.callback is None:
        return []
    send(job.callback, completion_payload(job))
    rt.store.update(
        job_id,
        expect={"callback_state": Delivery.PENDING},
        changes={"callback_state": Delivery.SENT},
    )
    return []
