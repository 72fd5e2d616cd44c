"""The Celery application: JSON only, late acks, prefetch 1, one queue per kind of task.

`celery -A imageq.worker.app worker` runs a worker with these settings; producers publish by task
name through an app of their own (`create_app`), so they never import the tasks module. The
worker's `app` is built on first use, from the process's settings: importing this module reads
none, so an unrelated bad setting cannot break an import.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, Final

from celery import Celery
from kombu.entity import Queue

# Connects the worker's signal handlers (logging, start-up checks, per-task log context).
import imageq.worker.signals  # noqa: F401
from imageq.config import Settings, WorkerSettings, get_settings
from imageq.worker.celery_output import use_json_output
from imageq.worker.lean_amqp import LEAN_AMQP
from imageq.worker.logs import json_logs, secret_values
from imageq.worker.messages import (
    BATCH_TASK,
    CALLBACK_TASK,
    DOWNLOAD_TASK,
    POLL_TASK,
    SUBMIT_TASK,
    SWEEP_TASK,
    WEBHOOK_TASK,
    Action,
    message,
    shown_arguments,
)
from imageq.worker.redis_clients import broker_connection, redbeat_connection
from imageq.worker.task_events import EVENTS


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from imageq's, as a plain mapping (tested on its own)."""
    worker = settings.worker
    broker = broker_connection(settings.redis)
    return ({"broker_use_ssl": broker.use_ssl} if broker.use_ssl else {}) | {
        "broker_url": broker.url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": broker.transport_options
        | {
            "visibility_timeout": worker.visibility_timeout_s,
            # kombu's default of 10 connections per channel loses acks under load
            # (MaxConnectionsError); keep the pool above the concurrency.
            "max_connections": max(worker.concurrency * 2, 20),
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Results live in the job store; Celery's own result backend is not used.
        "task_ignore_result": True,
        # Nor expired: without this, beat would schedule a daily `celery.backend_cleanup`.
        "result_expires": None,
        "task_acks_late": True,
        # No rate limits are used: skip Celery's per-task check.
        "worker_disable_rate_limits": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Task events for Flower, off by default: they cost CPU on every task (docs/flower.md).
        # Heartbeats (worker events) are the worker command's: `imageq worker` sends them.
        "worker_send_task_events": worker.task_events,
        "worker_pool": worker.pool,
        "worker_concurrency": worker.concurrency,
        "task_queues": [
            Queue(worker.submit_queue),
            Queue(worker.bulk_submit_queue),
            Queue(worker.poll_queue),
            Queue(worker.download_queue),
            Queue(worker.notify_queue),
        ],
        "task_default_queue": worker.submit_queue,
        "task_routes": {
            SUBMIT_TASK: {"queue": worker.submit_queue},
            POLL_TASK: {"queue": worker.poll_queue},
            DOWNLOAD_TASK: {"queue": worker.download_queue},
            CALLBACK_TASK: {"queue": worker.notify_queue},
            WEBHOOK_TASK: {"queue": worker.notify_queue},
            BATCH_TASK: {"queue": worker.notify_queue},
            SWEEP_TASK: {"queue": worker.poll_queue},
        },
        # Cron schedules are in UTC, as the schedule file says.
        "timezone": "UTC",
        "enable_utc": True,
        # `celery -A imageq.worker.app beat`: celery-redbeat, the schedule file's runs as its
        # entries (producers/scheduling/scheduler.py). The schedule and a lock live in Redis, so a
        # standby beat can wait beside the active one and take over once its lock lapses.
        "beat_scheduler": "imageq.producers.scheduling.scheduler:ScheduleFileScheduler",
        "beat_max_loop_interval": settings.schedule.loop_interval_s,
        # Options given explicitly, so redbeat does not fall back to the broker's transport ones.
        **redbeat_connection(settings.redis),
        "redbeat_key_prefix": f"{settings.redis.key_prefix}:redbeat:",
        "redbeat_lock_timeout": settings.schedule.lock_timeout_s,
        # The sweeper re-sends work a lost worker or message left overdue (worker/steps/sweep.py).
        "beat_schedule": {
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep.interval_s},
        },
    }


TASK_MODULES: Final = ("imageq.worker.tasks", "imageq.producers.scheduling.schedule_tasks")
"""Where the tasks are, by name: the worker imports them at start; nothing imports them here
(the scheduled run's task is producer code, which the worker reaches only by its task name)."""


def create_app(settings: Settings) -> Celery:
    """A Celery app configured from `settings` (producers build their own with theirs)."""
    # Task events through a dispatcher that loses none on the threads pool (task_events.py).
    # imageq's own task messages without the fields nothing reads (lean_amqp.py).
    app = Celery(
        "imageq",
        include=list(TASK_MODULES),
        set_as_current=False,
        events=EVENTS,
        amqp=LEAN_AMQP,
    )
    app.conf.update(celery_config(settings))
    return app


def send_actions(app: Celery, actions: Iterable[Action], queues: WorkerSettings) -> None:
    """Publish follow-up actions as task messages, from outside a task (producers, operator
    tools); the worker's own tasks publish theirs in `imageq.worker.tasks`."""
    for action in actions:
        send_message(app, action, queues)


def send_message(app: Celery, action: Action, queues: WorkerSettings) -> None:
    """Publish one action's task message, as the worker's tasks do."""
    name, args, options = message(action, queues)
    # The shown arguments, given: Celery's own `saferepr` of them is pure Python, 2 % of a
    # countdown worker's CPU.
    app.send_task(name, args=args, argsrepr=shown_arguments(args), kwargsrepr="{}", **options)


@cache
def default_app() -> Celery:
    """The worker's app, from the process's settings, built once on first use; an invalid
    setting fails here with `InvalidSettings` naming it. With JSON logs, the worker and beat
    it runs write JSON lines only (`use_json_output`)."""
    settings = get_settings()
    app = create_app(settings)
    if json_logs(settings.observability):
        use_json_output(app, secrets=secret_values(settings))
    return app


def __getattr__(name: str) -> Any:
    # `celery -A imageq.worker.app` and `from imageq.worker.app import app` look `app` up here.
    if name == "app":
        return default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
