"""Structured logs: one JSON object a line (or coloured lines on a terminal), with the job id,
remote task id, batch id and Celery task id of whatever the line is about, secrets masked.

Celery's own loggers, Python's warnings and imageq's lines go through the same stdlib handler,
formatted by structlog. The ids come from context variables: the Celery task's at task start
(`bind_task`), the job's when a step loads it (`bind_job`). A job's lifecycle lines (enqueued,
submitted, finished, ...) are plain stdlib calls with `extra=lifecycle(name, ...)`: in JSON
their `event` is that name and their text moves to `message` (docs/logs.md lists them).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

from imageq.config import ObservabilitySettings, Settings
from imageq.worker.redis_clients import secret_values as redis_secrets

MASK = "***"
LIFECYCLE_KEY = "lifecycle_event"
"""The `extra` key that names a lifecycle line (set by `lifecycle`)."""
FIELD_CHARS = 200
"""A lifecycle line's text fields (reasons, errors) are cut to this many characters."""

# `scheme://user:password@` (or `scheme://:password@`, `scheme://token@`) in any text; left
# as it is when already masked (Celery writes `redis://:**@host`).
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(?!:?\*+@)[^\s/@]+@")


def json_logs(settings: ObservabilitySettings) -> bool:
    """Whether this process logs JSON lines: `json`, or `auto` with stderr not a terminal."""
    if settings.log_format == "auto":
        return not sys.stderr.isatty()
    return settings.log_format == "json"


def configure_logging(
    settings: ObservabilitySettings, *, secrets: Iterable[str], level: str | None = None
) -> None:
    """Route every log record of this process, and Python's warnings, through structlog, to
    stderr; `level` overrides the settings' level (the CLI's, on a terminal)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        name_lifecycle_event,
    ]
    as_json = json_logs(settings)
    renderer: Processor = (
        structlog.processors.JSONRenderer(default=str)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Last before rendering, so tracebacks and exception texts are masked too.
            Redactor(secrets),
            renderer,
        ],
    )
    handler = StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or settings.log_level)
    # Warnings (Celery's SecurityWarning for a worker run as root, among others) become log
    # records of the `py.warnings` logger instead of raw text on stderr.
    logging.captureWarnings(True)
    per_task = settings.log_level if settings.log_task_lines else "WARNING"
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(per_task)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # before any work, for the DEBUG lines of polls
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # of sys.stderr
    """Writes to `sys.stderr` as it is at each line, as `logging.lastResort` does: a stream
    swapped after set-up (a test's capture, a closed one) does not keep the lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # read-only: always the current sys.stderr
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_cli_logging(settings: Settings) -> None:
    """The CLI's logging: only warnings, as the command's own output already says what it
    did; with JSON logs asked for by name (`log_format=json`), JSON lines at the settings'
    level, the lifecycle lines (`job.enqueued` ...) included. `auto` does not turn them on: a
    script's stderr holds the command's own messages (with --json, its one error object)."""
    observability = settings.observability
    level = None if observability.log_format == "json" else "WARNING"
    configure_logging(observability, secrets=secret_values(settings), level=level)


def lifecycle(event: str, **fields: Any) -> dict[str, Any]:
    """The `extra=` of a lifecycle line: its name (`job.submitted`, ...) and its fields, the
    ones that are None left out, texts cut to `FIELD_CHARS` (an API error can quote a prompt)."""
    kept = {k: _short(v) for k, v in fields.items() if v is not None}
    return {LIFECYCLE_KEY: event, **kept}


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > FIELD_CHARS:
        return value[: FIELD_CHARS - 1] + "…"
    return value


def name_lifecycle_event(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """A lifecycle line's `event` is its name; its text goes to `message`."""
    name = event_dict.pop(LIFECYCLE_KEY, None)
    if name is not None:
        event_dict["message"] = event_dict.get("event")
        event_dict["event"] = name
    return event_dict


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
    """Masks secret values, and the credentials of any URL, wherever they appear in a line
    (nested values included): a last line of defence, since no imageq code logs a secret on
    purpose."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, _: Any, __: str, event_dict: EventDict) -> EventDict:
        return {key: _masked(value, self._secrets) for key, value in event_dict.items()}


def mask_text(value: str, secrets: Iterable[str]) -> str:
    """`value` with the given secrets and every URL's credentials masked."""
    if "@" in value:
        value = _URL_CREDENTIALS.sub(rf"\1{MASK}@", value)
    for secret in secrets:
        if secret in value:
            value = value.replace(secret, MASK)
    return value


def _masked(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return mask_text(value, secrets)
    if isinstance(value, dict):
        return {key: _masked(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item, secrets) for item in value]
    return value


def secret_values(settings: Settings) -> list[str]:
    """Every secret in the settings, as it could appear in text, for the log redactor."""
    values = [secret.get_secret_value() for secret in settings.webhook.secrets]
    values += [value.removeprefix("whsec_") for value in values]
    if settings.api.key is not None:
        values.append(settings.api.key.get_secret_value())
    return values + redis_secrets(settings.redis)
