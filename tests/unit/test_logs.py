"""Log formatting: lifecycle lines named in `event`, secrets and URL credentials masked in every
field, warnings as log lines, Celery's notices as JSON; and when a process logs JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from typing import Any

import celery.apps.worker
import pytest
from celery import Celery

from imageq.config import ObservabilitySettings
from imageq.worker.celery_output import say_as_json, use_json_output
from imageq.worker.logs import (
    FIELD_CHARS,
    MASK,
    Redactor,
    configure_logging,
    json_logs,
    lifecycle,
    mask_text,
    name_lifecycle_event,
)

SECRET = "sk-live-abcdef123456"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def json_lines(capsys: pytest.CaptureFixture[str]) -> Any:
    """Set up JSON logging at DEBUG with SECRET as a secret; returns a reader of its lines."""
    settings = ObservabilitySettings(log_format="json", log_level="DEBUG")
    configure_logging(settings, secrets=[SECRET])

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines()]

    yield read
    logging.captureWarnings(False)


@pytest.mark.parametrize(
    ("log_format", "tty", "expected"),
    [
        ("json", True, True),
        ("json", False, True),
        ("console", False, False),
        ("auto", False, True),
        ("auto", True, False),
    ],
)
def test_json_logs_follows_the_format_and_the_terminal(
    monkeypatch: pytest.MonkeyPatch, log_format: Any, tty: bool, expected: bool
) -> None:
    """`auto` is JSON exactly when stderr is not a terminal."""
    monkeypatch.setattr("sys.stderr", Tty() if tty else io.StringIO())
    assert json_logs(ObservabilitySettings(log_format=log_format)) is expected


def test_a_lifecycle_line_is_named_in_event_with_its_text_in_message(json_lines: Any) -> None:
    """`extra=lifecycle(...)`: `event` is the name, `message` the text, None fields left out."""
    fields = lifecycle("job.finished", job_id="j1", batch_id=None, status="succeeded")
    logging.getLogger("imageq.test").info("job %s finished", "j1", extra=fields)
    (line,) = json_lines()
    assert line["event"] == "job.finished"
    assert line["message"] == "job j1 finished"
    assert (line["job_id"], line["status"], line["level"]) == ("j1", "succeeded", "info")
    assert "batch_id" not in line
    assert line["timestamp"].endswith("Z")


def test_a_plain_line_keeps_its_text_in_event(json_lines: Any) -> None:
    """Lines that are not lifecycle lines (Celery's, say) are as before: text in `event`."""
    logging.getLogger("celery.beat").info("beat: Acquired lock")
    (line,) = json_lines()
    assert (line["event"], line["logger"]) == ("beat: Acquired lock", "celery.beat")
    assert "message" not in line


def test_long_lifecycle_texts_are_cut() -> None:
    """A reason longer than FIELD_CHARS (an API error quoting a prompt) is cut, with an ellipsis."""
    fields = lifecycle("job.finished", reason="x" * 1000, attempt=3)
    assert len(fields["reason"]) == FIELD_CHARS
    assert fields["reason"].endswith("…")
    assert fields["attempt"] == 3


def test_secrets_are_masked_in_tracebacks_and_extra_fields(json_lines: Any) -> None:
    """A secret in an exception's text, in the message's arguments and in a nested field is
    masked in the line written."""
    log = logging.getLogger("imageq.test")
    try:
        raise RuntimeError(f"connect failed with key {SECRET}")
    except RuntimeError:
        log.exception("failed: %s", SECRET, extra={"detail": {"headers": [f"Bearer {SECRET}"]}})
    (line,) = json_lines()
    assert SECRET not in json.dumps(line)
    assert "Traceback" in line["exception"]
    assert line["event"] == f"failed: {MASK}"
    assert line["detail"] == {"headers": [f"Bearer {MASK}"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:hunter22@10.0.0.1:6379/0", "redis://***@10.0.0.1:6379/0"),
        ("see https://user:pw@example.com/x?a=1", "see https://***@example.com/x?a=1"),
        ("Connected to redis://:**@127.0.0.1:6379/0", "Connected to redis://:**@127.0.0.1:6379/0"),
        ("redis://:***@h/0 redis://:**x@h/0", "redis://:***@h/0 redis://***@h/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("mail me at a@b.c", "mail me at a@b.c"),
    ],
)
def test_url_credentials_are_masked(text: str, expected: str) -> None:
    """Any URL's user and password are masked, whether or not they are known secrets."""
    assert mask_text(text, []) == expected


def test_the_redactor_leaves_short_values_and_other_types_alone() -> None:
    """Secrets shorter than 6 characters are not masked (they would mask common words);
    numbers and None pass through."""
    redact = Redactor(["abc", SECRET])
    line = redact(None, "info", {"event": "abc " + SECRET, "n": 3, "none": None})
    assert line == {"event": f"abc {MASK}", "n": 3, "none": None}


def test_a_warning_becomes_a_json_line(json_lines: Any) -> None:
    """Python warnings (Celery's SecurityWarning for root, for one) are lines of `py.warnings`."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)  # pytest's catch_warnings replaced the hook; set it again
        warnings.warn(f"running as root with {SECRET}", UserWarning, stacklevel=1)
    (line,) = json_lines()
    assert line["logger"] == "py.warnings"
    assert line["level"] == "warning"
    assert "running as root" in line["event"]
    assert SECRET not in line["event"]


def test_the_cli_on_a_terminal_logs_warnings_only(capsys: pytest.CaptureFixture[str]) -> None:
    """A `level` given to configure_logging overrides the settings' (the CLI's on a terminal)."""
    configure_logging(ObservabilitySettings(log_format="json"), secrets=[], level="WARNING")
    logging.getLogger("imageq.test").info("job.enqueued")
    logging.getLogger("imageq.test").warning("careful")
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert events == ["careful"]


def test_celerys_notices_are_written_as_json_lines() -> None:
    """Celery's `safe_say` replacement writes one JSON line, credentials masked, with os.write
    (safe in a signal handler)."""
    read, write = os.pipe()
    with os.fdopen(write, "w") as stream:
        say_as_json(f"\nRestarting celery worker (-b redis://:{SECRET}@h/0)\n", stream, secrets=[])
    with os.fdopen(read) as pipe:
        text = pipe.read()
    (line,) = [json.loads(item) for item in text.splitlines()]
    assert line["event"] == "Restarting celery worker (-b redis://***@h/0)"
    assert (line["level"], line["logger"]) == ("info", "celery.apps.worker")


def test_name_lifecycle_event_leaves_other_lines_alone() -> None:
    """Without the lifecycle key the event dict is unchanged."""
    assert name_lifecycle_event(None, "info", {"event": "x"}) == {"event": "x"}


def test_json_output_replaces_the_banners_and_celerys_say(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the worker's app: a worker whose banner is a log line, a beat without one, and
    Celery's `safe_say` (which a Celery upgrade could rename: this test would say so) as JSON."""
    assert callable(celery.apps.worker.safe_say)
    monkeypatch.setattr(celery.apps.worker, "safe_say", celery.apps.worker.safe_say)
    app = Celery("test", set_as_current=False)
    use_json_output(app, secrets=[SECRET])
    assert app.Worker.emit_banner.__qualname__ == "_JsonWorker.emit_banner"
    assert app.Beat(app=app, quiet=False).quiet is True
    assert celery.apps.worker.safe_say.func is say_as_json
