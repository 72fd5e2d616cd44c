"""JSON bodies the simulator answers with, built from tasks without any I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from imageq.simulator.credits import task_credits
from imageq.simulator.phases import FINISHED, Phase
from imageq.simulator.sim_config import Envelope
from imageq.simulator.state import Clock, Task
from imageq.worker.domain.sizes import MODEL

CREDITS_PER_TASK: Final = 100
FAILURE_MESSAGE: Final = "simulated generation failure"


def iso_ms(epoch_s: float) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z`, as the platform writes timestamps."""
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def code_error(code: int, message: str) -> dict[str, Any]:
    """The `code` envelope used by the gpt_image_2_official submit page."""
    return {"code": code, "message": message}


def status_error(code: int, message: str) -> dict[str, Any]:
    """The `statusCode` envelope used by the platform's other pages."""
    return {"statusCode": code, "message": message}


def submit_body(task: Task, clock: Clock, envelope: Envelope) -> dict[str, Any]:
    """The answer to an accepted submit, in the configured envelope."""
    if envelope == "gpt_image_2_official":
        return {"code": 200, "data": [{"status": "submitted", "task_id": task.task_id}]}
    return {
        "statusCode": 200,
        "message": "",
        "data": {
            "task_id": task.task_id,
            "out_task_id": task.submission.out_task_id,
            "status": "pending",
            "estimated_credits": CREDITS_PER_TASK,
            "created_at": iso_ms(clock.to_epoch(task.created_s)),
        },
    }


def query_body(
    task: Task,
    clock: Clock,
    *,
    now_s: float,
    base_url: str,
    images: int,
    credits: Mapping[str, Mapping[str, int]] | None,
) -> dict[str, Any]:
    """The answer to a query; output URLs are absolute, under `base_url`; `credits_used` from
    the `credits` table, left out when it is None."""
    phase = task.phase(now_s)
    finished = phase in FINISHED
    output = (
        [{"url": image_url(base_url, task.task_id, n)} for n in range(images)]
        if phase is Phase.COMPLETED
        else []
    )
    data: dict[str, Any] = {
        "task_id": task.task_id,
        "out_task_id": task.submission.out_task_id,
        "status": task.words.word(phase),
        "created_at": iso_ms(clock.to_epoch(task.created_s)),
        "completed_at": iso_ms(clock.to_epoch(task.due_s)) if finished else None,
        "input": {"model": MODEL, "params": task.submission.params},
        "output": output,
        "error": FAILURE_MESSAGE if phase is Phase.FAILED else None,
    }
    if credits is not None:
        submission = task.submission
        data["credits_used"] = task_credits(
            credits,
            quality=submission.quality,
            resolution=submission.resolution,
            completed=phase is Phase.COMPLETED,
        )
    return {"statusCode": 200, "message": "", "data": data}


def image_url(base_url: str, task_id: str, n: int) -> str:
    """Where image `n` (0-based) of a task is served."""
    return f"{base_url}/files/{task_id}/{n}.png"
