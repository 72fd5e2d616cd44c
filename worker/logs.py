"""Structured logs: one JSON object a line (or coloured lines on a terminal), with the job id,
remote task id, batch id and Celery task id of whatever the line is about, secrets masked.

Celery's own loggers and imageq's go through the same stdlib handler, formatted by structlog.
The ids come from context variables: the Celery task's at task start (`bind_task`), the job's
when a step loads it (`bind_job`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from structlog.typing import EventDict, Processor

from imageq.config import ObservabilitySettings, Settings

MASK = "***"


def configure_logging(settings: ObservabilitySettings, *, secrets: Iterable[str]) -> None:
    """Route every log record of this process through structlog, to stderr."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        Redactor(secrets),
    ]
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    per_task = settings.log_level if settings.log_task_lines else "WARNING"
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(per_task)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def bind_task(task_id: str | None, task_name: str | None) -> None:
    """At the start of a Celery task: later lines carry its id and name."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(celery_task_id=task_id, task=task_name)


def bind_job(job_id: str, *, remote_task_id: str | None, batch_id: str | None) -> None:
    """Once a step has its job: later lines carry the job's ids."""
    ids = {"job_id": job_id, "remote_task_id": remote_task_id, "batch_id": batch_id}
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def unbind() -> None:
    structlog.contextvars.clear_contextvars()


class Redactor:
    """Masks secret values wherever they appear in a line: a last line of defence, since no
    imageq code logs a secret on purpose."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        if self._secrets:
            _mask(event_dict, self._secrets)
        return event_dict


def _mask(values: MutableMapping[str, Any], secrets: list[str]) -> None:
    for key, value in values.items():
        if isinstance(value, str) and any(secret in value for secret in secrets):
            for secret in secrets:
                value = value.replace(secret, MASK)
            values[key] = value


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
