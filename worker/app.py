"""The Celery application: JSON only, late acks, prefetch 1, one queue per kind of task.

`celery -A imageq.worker.app worker` runs a worker with these settings; producers publish by task
name through the same app, so they never import the tasks module.
"""

from __future__ import annotations

import importlib
import logging
import ssl
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from kombu.entity import Queue

from imageq.config import Settings, get_settings
from imageq.worker import broker
from imageq.worker.logs import bind_task, configure_logging, unbind
from imageq.worker.messages import (
    BATCH_TASK,
    CALLBACK_TASK,
    DOWNLOAD_TASK,
    POLL_TASK,
    SUBMIT_TASK,
    SWEEP_TASK,
    WEBHOOK_TASK,
)
from imageq.worker.metrics import serve_metrics


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from imageq's, as a plain mapping (tested on its own)."""
    worker = settings.worker
    return _tls(settings.redis.broker_url) | {
        "broker_url": settings.redis.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
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
        "redbeat_redis_url": settings.redis.broker_url,
        # Given explicitly, so redbeat does not fall back to the broker's transport options.
        "redbeat_redis_options": {"socket_timeout": 10, "socket_connect_timeout": 5},
        "redbeat_key_prefix": f"{settings.redis.key_prefix}:redbeat:",
        "redbeat_lock_timeout": settings.schedule.lock_timeout_s,
        # The sweeper re-sends work a lost worker or message left overdue (worker/steps/sweep.py).
        "beat_schedule": {
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep.interval_s},
        },
    }


def _tls(broker_url: str) -> dict[str, Any]:
    """A `rediss://` broker URL without `ssl_cert_reqs` verifies the server's certificate, as
    redis-py does for the job store; kombu alone would fall back to not checking it."""
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return {}
    return {"broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_REQUIRED}}


def secret_values(settings: Settings) -> list[str]:
    """Every secret in the settings, as it could appear in text, for the log redactor."""
    values = [secret.get_secret_value() for secret in settings.webhook.secrets]
    values += [value.removeprefix("whsec_") for value in values]
    if settings.api.key is not None:
        values.append(settings.api.key.get_secret_value())
    for url in (settings.redis.broker_url, settings.redis.store_url):
        password = urlsplit(url).password
        if password:
            values.append(password)
    return values


def create_app(settings: Settings) -> Celery:
    app = Celery(
        "imageq",
        include=["imageq.worker.tasks", "imageq.producers.scheduling.tasks"],
        set_as_current=False,
    )
    app.conf.update(celery_config(settings))
    return app


log = logging.getLogger(__name__)
app = create_app(get_settings())


@setup_logging.connect
def _structured_logs(**_: Any) -> None:
    # Connected, this signal tells Celery to leave logging to us: its lines and ours alike.
    settings = get_settings()
    configure_logging(settings.observability, secrets=secret_values(settings))


@worker_init.connect
def _refuse_an_unpatched_gevent_pool(sender: Any = None, **_: Any) -> None:
    # Celery monkey-patches for gevent only when the pool is named on its command line
    # (`-P gevent`); chosen in the settings alone, every greenlet would block the others.
    pool = str(getattr(sender, "pool_cls", ""))
    if "gevent" in pool and not _gevent_patched():
        raise SystemExit(
            "imageq worker: the gevent pool needs `-P gevent` on the command line (Celery "
            "patches for gevent only then): run `imageq worker`, which passes the pool of "
            "IMAGEQ_WORKER__POOL, or `celery -A imageq.worker.app worker -P gevent`"
        )


@worker_init.connect
def _one_broker_client_per_channel(sender: Any = None, **_: Any) -> None:
    # In workers only, where every poll is a publish, a delivery and an ack (worker/broker.py).
    # Producers, beat and Flower keep kombu's own transport and its URL scheme, by which
    # Flower, for one, chooses how to read the queues.
    conf = sender.app.conf
    if broker.serves(conf.broker_url):
        conf.broker_transport = broker.TRANSPORT


def _gevent_patched() -> bool:
    if "gevent" not in sys.modules:
        return False
    monkey = importlib.import_module("gevent.monkey")  # gevent is optional and untyped
    return bool(monkey.is_module_patched("socket"))


@worker_init.connect
def _refuse_to_start_without_a_key(**_: Any) -> None:
    # Without a key every submit would fail; better one clear error at start than many later.
    settings = get_settings()
    if settings.api.key is None:
        raise SystemExit("imageq worker: set IMAGEQ_API__KEY (the aireiter API key) to start")
    port = settings.observability.metrics_port
    if port:
        from imageq.worker.runtime import runtime

        try:
            serve_metrics(port, in_flight=lambda: runtime().store.in_flight_count())
        except OSError as error:  # another worker on this host has the port
            log.warning("metrics not served on port %d: %s", port, error.strerror)


_poller: Any = None


@worker_ready.connect
def _start_poller(**_: Any) -> None:
    global _poller
    if get_settings().polling.mode == "poller":
        from imageq.worker.poller import Poller
        from imageq.worker.runtime import runtime
        from imageq.worker.tasks import publish_actions

        _poller = Poller(runtime(), publish_actions)
        _poller.start()


@worker_shutdown.connect
def _stop_poller(**_: Any) -> None:
    if _poller is not None:
        _poller.stop()


@task_prerun.connect
def _bind_task_ids(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    bind_task(task_id, getattr(task, "name", None))


@task_postrun.connect
def _unbind_task_ids(**_: Any) -> None:
    unbind()


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: Any) -> None:
    # A prefork child must not share its parent's Redis or HTTP connections.
    from imageq.worker.runtime import reset_runtime

    reset_runtime()
