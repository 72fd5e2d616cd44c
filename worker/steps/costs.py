"""What a finished job cost: from the poll's answer, or one follow-up query if a setting asks."""

from __future__ import annotations

from imageq.worker.errors import ApiError
from imageq.worker.logs import lifecycle
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import log
from imageq.worker.upstream.responses import RemoteTask


def credits_of(rt: Runtime, remote: RemoteTask) -> float | None:
    """The task's `credits_used`: as the poll's answer gave it; where it lacks it, and only
    with `cost.query_after_completion`, one POST query by task id (whose documented answer
    has it). A failed query costs the record nothing but the amount."""
    if remote.credits_used is not None or not rt.settings.cost.query_after_completion:
        return remote.credits_used
    try:
        return rt.client.query_task(remote.task_id).credits_used
    except ApiError as error:
        fields = lifecycle("job.credits_query_failed", remote_task_id=remote.task_id)
        log.info("credits query of task %s failed: %r", remote.task_id, error, extra=fields)
        return None
