"""The worker's signal handlers: structured logs, start-up checks, per-task log context, and a
fresh runtime after a fork. Connected when `imageq.worker.app` is imported."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, NoReturn

from celery.signals import (
    beat_init,
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)

from imageq.config import get_settings
from imageq.worker import broker
from imageq.worker.logs import bind_task, configure_logging, lifecycle, secret_values, unbind
from imageq.worker.metrics import serve_metrics

log = logging.getLogger(__name__)


@setup_logging.connect
def _structured_logs(**_: Any) -> None:
    # Connected, this signal tells Celery to leave logging to us: its lines and ours alike.
    settings = get_settings()
    configure_logging(settings.observability, secrets=secret_values(settings))


@celeryd_init.connect
def _structured_logs_from_the_start(**_: Any) -> None:
    # A worker sets up logging only after its first checks, whose warning (run as root) would
    # otherwise reach stderr as raw text: set it up before them too.
    _structured_logs()


@beat_init.connect
def _beat_started(sender: Any = None, **_: Any) -> None:
    # Beat's banner is left out in JSON mode (worker/celery_output.py): its facts, as a line.
    app = sender.app
    log.info(
        "beat started",
        extra=lifecycle(
            "beat.started",
            broker=app.connection().as_uri(),  # the password masked
            scheduler=str(sender.scheduler_cls),
            max_interval_s=sender.max_interval,
        ),
    )


@worker_init.connect
def _refuse_an_unpatched_gevent_pool(sender: Any = None, **_: Any) -> None:
    # Celery monkey-patches for gevent only when the pool is named on its command line
    # (`-P gevent`); chosen in the settings alone, every greenlet would block the others.
    pool = str(getattr(sender, "pool_cls", ""))
    if "gevent" in pool and not _gevent_patched():
        _refuse(
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
    transport = broker.transport_for(conf.broker_url)
    if transport is not None:
        conf.broker_transport = transport


def _refuse(reason: str) -> NoReturn:
    """Stop the worker at start, saying why as a log line (JSON in JSON mode), not raw text."""
    log.critical(reason)
    raise SystemExit(1)


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
        _refuse("imageq worker: set IMAGEQ_API__KEY (the aireiter API key) to start")
    port = settings.observability.metrics_port
    if port:
        try:
            serve_metrics(port)
        except OSError as error:  # another worker on this host has the port
            log.warning("metrics not served on port %d: %s", port, error.strerror)


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
