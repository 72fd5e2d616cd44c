"""Celery's own output when logs are JSON: so that every line a worker or beat writes parses.

Celery prints its banners and a few notices (a warm shutdown's, a restart's) as text straight
to stdout. In JSON mode the worker's banner becomes one `worker.started` line, beat's banner is
left out (its `beat.started` line comes from `imageq.worker.signals`), and the notices are
written as JSON lines. Applied to the app that workers and beat run (`default_app`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, TextIO

import celery.apps.worker
from celery import Celery, beat
from celery.apps.beat import Beat
from celery.apps.worker import Worker

from imageq.worker.logs import lifecycle, mask_text

log = logging.getLogger("celery.apps.worker")


def use_json_output(app: Celery, *, secrets: Iterable[str]) -> None:
    """Make the worker and beat that `app` runs write JSON lines only."""
    app.Worker = app.subclass_with_self(_JsonWorker, reverse="Worker")
    app.Beat = app.subclass_with_self(_QuietBeat, reverse="Beat")
    # Celery's signal handlers write their notices through this function (with os.write, as
    # a signal handler must not take the logging lock); the worker's module looks it up at
    # each call, so replacing it here reaches them all.
    celery.apps.worker.safe_say = partial(say_as_json, secrets=list(secrets))


def say_as_json(msg: str, f: TextIO | None = sys.__stderr__, *, secrets: list[str]) -> None:
    """Celery's `safe_say`, as one JSON line: written with os.write, safe in a signal handler."""
    if f is None:
        return
    line = {
        "event": mask_text(msg.strip(), secrets),
        "level": "info",
        "logger": "celery.apps.worker",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    os.write(f.fileno(), (json.dumps(line) + "\n").encode())


class _JsonWorker(Worker):  # type: ignore[misc]  # Celery is untyped
    """The worker, its banner one log line."""

    def emit_banner(self) -> None:
        app = self.app
        pool = self.pool_cls if isinstance(self.pool_cls, str) else self.pool_cls.__module__
        log.info(
            "worker %s started",
            self.hostname,
            extra=lifecycle(
                "worker.started",
                hostname=self.hostname,
                celery_version=celery.__version__,
                pool=pool.rsplit(".", 1)[-1],
                concurrency=self.concurrency,
                broker=app.connection().as_uri(),  # the password masked
                queues=sorted(app.amqp.queues.consume_from or app.amqp.queues),
                tasks=sorted(name for name in app.tasks if not name.startswith("celery.")),
            ),
        )


class _PreparedService(beat.Service):  # type: ignore[misc]  # Celery is untyped
    """Beat's service, building a lazy scheduler at once, as Beat's banner does: so its
    modules load before "beat: Starting...", not between that line and the schedule's first
    Redis call (a Redis lost in that gap stops beat: redbeat's set-up does not retry)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.get_scheduler(lazy=True)


class _QuietBeat(Beat):  # type: ignore[misc]  # Celery is untyped
    """Beat without its banner, which it prints before logging is set up."""

    Service = _PreparedService

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "quiet": True})
