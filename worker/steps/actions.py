"""Follow-up actions a step asks its task to schedule: plain values, no Celery."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrySubmit:
    """Run the submit step again after `countdown_s`."""

    job_id: str
    countdown_s: float


@dataclass(frozen=True)
class SchedulePoll:
    """Run the poll step with this token after `countdown_s`."""

    job_id: str
    token: int
    countdown_s: float


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


Action = RetrySubmit | SchedulePoll | ScheduleDownload | ScheduleCallback | ScheduleWebhook
Actions = list[Action]
