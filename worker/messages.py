"""Follow-up actions a step asks for, and the task message each one becomes.

Plain values, no Celery: `message()` turns an action into a task name, its JSON arguments and
its publishing options, for the worker's tasks and the producers alike.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from imageq.config import WorkerSettings

SUBMIT_TASK = "imageq.submit"
POLL_TASK = "imageq.poll"
DOWNLOAD_TASK = "imageq.download"
CALLBACK_TASK = "imageq.callback"
WEBHOOK_TASK = "imageq.webhook"
BATCH_TASK = "imageq.batch_finished"
SWEEP_TASK = "imageq.sweep"


@dataclass(frozen=True)
class Submit:
    """Run the submit step after `countdown_s`, on the queue of the job's lane."""

    job_id: str
    lane: str
    countdown_s: float = 0.0


@dataclass(frozen=True)
class PollFacts:
    """What a poll needs of the job record, carried in its message: with them the poll asks the
    API before reading the record at all (its write still checks the status and the token, so a
    stale or repeated message changes nothing). The remote task id and the deadline are fixed at
    submit; each poll hands on the count, as it writes it. The submit time and the job's kind
    (quality, resolution) place the next poll by recent jobs of that kind; a message without
    them (sent before they were carried) polls on the plain schedule."""

    remote_task_id: str
    deadline_at: float
    poll_count: int
    submitted_at: float = 0.0
    quality: str = ""
    resolution: str = ""

    @classmethod
    def from_message(cls, value: list[Any] | dict[str, Any]) -> PollFacts:
        """The facts as a message carries them: a list in field order (`to_message`), or the
        dict by field name that messages carried before (still read, so none is lost)."""
        given = value if isinstance(value, dict) else dict(zip(_FACT_FIELDS, value, strict=False))
        return cls(
            remote_task_id=str(given["remote_task_id"]),
            deadline_at=float(given["deadline_at"]),
            poll_count=int(given["poll_count"]),
            submitted_at=float(given.get("submitted_at", 0.0)),
            quality=str(given.get("quality", "")),
            resolution=str(given.get("resolution", "")),
        )

    def to_message(self) -> list[Any]:
        """The facts in field order, without their names: a worker holds each countdown message
        until it is due, and names would be allocated again in every one."""
        return [getattr(self, name) for name in _FACT_FIELDS]


_FACT_FIELDS = tuple(field.name for field in fields(PollFacts))


@dataclass(frozen=True)
class SchedulePoll:
    """Run the poll step with this token after `countdown_s` (with the job's `facts`, if known:
    a message without them makes the poll read the record first)."""

    job_id: str
    token: int
    countdown_s: float
    facts: PollFacts | None = None


@dataclass(frozen=True)
class ScheduleDownload:
    """Run download attempt number `attempt` after `countdown_s`."""

    job_id: str
    attempt: int
    countdown_s: float = 0.0


@dataclass(frozen=True)
class ScheduleCallback:
    """Publish the job's Celery callback."""

    job_id: str


@dataclass(frozen=True)
class ScheduleWebhook:
    """Run webhook attempt number `attempt` after `countdown_s` (a hop, if not yet due)."""

    job_id: str
    attempt: int
    countdown_s: float = 0.0


@dataclass(frozen=True)
class BatchFinished:
    """The batch's last job is terminal: send the batch's own notifications (after
    `countdown_s`; `round` counts the waits for outputs still being saved)."""

    batch_id: str
    countdown_s: float = 0.0
    round: int = 0


Action = (
    Submit | SchedulePoll | ScheduleDownload | ScheduleCallback | ScheduleWebhook | BatchFinished
)
Actions = list[Action]

Message = tuple[str, list[Any], dict[str, Any]]
"""A task name, its arguments, and `apply_async` options."""


def shown_arguments(args: list[Any]) -> str:
    """A message's arguments as Celery shows them (logs, Flower): the ids and numbers, with
    `...` for the poll facts (a worker holds each countdown message, and this text, in memory
    until it is due; the facts are in the arguments themselves)."""
    shown = (repr(arg) if isinstance(arg, str | int | float) else "..." for arg in args)
    return f"[{', '.join(shown)}]"


def message(action: Action, queues: WorkerSettings) -> Message:
    """The task message that carries out an action."""
    match action:
        case Submit(job_id, lane, countdown_s):
            queue = queues.bulk_submit_queue if lane == "bulk" else queues.submit_queue
            return SUBMIT_TASK, [job_id], {"countdown": countdown_s, "queue": queue}
        case SchedulePoll(job_id, token, countdown_s, facts):
            args: list[Any] = (
                [job_id, token] if facts is None else [job_id, token, facts.to_message()]
            )
            return POLL_TASK, args, {"countdown": countdown_s}
        case ScheduleDownload(job_id, attempt, countdown_s):
            return DOWNLOAD_TASK, [job_id, attempt], {"countdown": countdown_s}
        case ScheduleCallback(job_id):
            return CALLBACK_TASK, [job_id], {}
        case ScheduleWebhook(job_id, attempt, countdown_s):
            return WEBHOOK_TASK, [job_id, attempt], {"countdown": countdown_s}
        case BatchFinished(batch_id, countdown_s, round_):
            return BATCH_TASK, [batch_id, round_], {"countdown": countdown_s}
