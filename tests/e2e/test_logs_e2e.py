"""Logs an operator can follow (docs/logs.md): a real worker and a real beat, started the way
the docs say (`imageq worker`, `imageq scheduler`) in JSON mode with stdout and stderr captured
apart, and a job queued with `imageq submit`. Every line of every stream is a JSON object; the
job's lifecycle lines are all found by its id; the docs' jq recipe selects them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import settings_env
from tests.conftest import API_KEY, WEBHOOK_SECRET, wait_for

DOCS = Path(__file__).parents[2] / "docs" / "logs.md"
CLI = [sys.executable, "-m", "imageq.cli"]
LIFECYCLE = ["job.submitted", "job.polled", "job.finished", "job.downloaded"]


@dataclass
class Streams:
    """A process's stdout and stderr, each in a file of its own."""

    name: str
    out: Path
    err: Path

    def text(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def lines(self) -> list[tuple[str, str]]:
        """(which stream, line) for every line written."""
        return [
            (f"{self.name} {which}", line)
            for which, path in (("stdout", self.out), ("stderr", self.err))
            for line in path.read_text().splitlines()
        ]


class Process:
    """A command run with its streams captured apart; stopped with SIGTERM, as by an operator."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], root: Path) -> None:
        self.streams = Streams(name, root / f"{name}.out", root / f"{name}.err")
        self._files: list[IO[bytes]] = [self.streams.out.open("wb"), self.streams.err.open("wb")]
        self.process = subprocess.Popen(
            command, env=env, stdout=self._files[0], stderr=self._files[1]
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for file in self._files:
            file.close()


@dataclass
class Logged:
    """What a job's run left: each process's streams, the job's id and the CLI's result."""

    worker: Streams
    beat: Streams
    cli: Streams
    job_id: str
    result: dict[str, Any]

    def every_line(self) -> list[tuple[str, str]]:
        return self.worker.lines() + self.beat.lines() + self.cli.lines()

    def log_lines(self) -> list[tuple[str, str]]:
        """Every line but the CLI's result (its stdout)."""
        return [(which, line) for which, line in self.every_line() if which != "cli stdout"]


def _events(lines: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [json.loads(line) for _, line in lines]


def _job_lines(streams: Streams, job_id: str, event: str) -> list[dict[str, Any]]:
    """The job's lines named `event` so far (a line still being written is skipped)."""
    found = []
    for _, line in streams.lines():
        try:
            value = json.loads(line)
        except ValueError:
            continue  # checked by the tests; here only the line sought matters
        if value.get("job_id") == job_id and value.get("event") == event:
            found.append(value)
    return found


@pytest.fixture(scope="module")
def logged(
    settings_values: dict[str, Any],
    receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Logged:
    root = tmp_path_factory.mktemp("logs")
    queues = {kind: f"logs.{kind}" for kind in ("submit", "bulk_submit", "poll", "download")}
    queues["notify"] = "logs.notify"
    values = {
        **settings_values,
        # Queues and keys of their own: the session's worker never takes this job's messages.
        "redis": {**settings_values["redis"], "key_prefix": "imageq-logs"},
        "worker": {**settings_values["worker"], **{f"{k}_queue": q for k, q in queues.items()}},
        "observability": {
            **settings_values["observability"],
            "log_format": "json",
            "log_level": "DEBUG",  # polls' lines, and Celery's and kombu's own debug lines
            "metrics_port": 0,
        },
        "schedule": {"loop_interval_s": 0.5},
    }
    env = {**os.environ, **settings_env(values), "PYTHONUNBUFFERED": "1"}
    worker = Process("worker", [*CLI, "worker", "--hostname=logs@%h"], env, root)
    beat = Process("beat", [*CLI, "scheduler"], env, root)
    try:
        wait_for(lambda: " ready." in worker.streams.text(), timeout_s=60, what="worker ready")
        wait_for(lambda: "Acquired lock" in beat.streams.text(), timeout_s=60, what="beat's lock")
        webhook = f"{receiver.base_url}/hooks/logs"
        command = [*CLI, "submit", "a lighthouse at dusk", "-r", "1:1", "-s", "1K"]
        command += ["--webhook", webhook, "--wait", "--timeout", "60", "--json"]
        cli = Streams("cli", root / "cli.out", root / "cli.err")
        with cli.out.open("wb") as out, cli.err.open("wb") as err:
            done = subprocess.run(command, env=env, stdout=out, stderr=err, timeout=90, check=False)
        assert done.returncode == 0, cli.text()
        result = json.loads(cli.out.read_text())
        job_id = result["job_id"]
        wait_for(
            lambda: _job_lines(worker.streams, job_id, "job.webhook_attempt"),
            timeout_s=30,
            what="the job's webhook attempt line",
        )
    finally:
        worker.stop()
        beat.stop()
    return Logged(worker.streams, beat.streams, cli, job_id, result)


def test_every_line_of_every_stream_is_a_json_object(logged: Logged) -> None:
    """Worker, beat and CLI, stdout and stderr: each line parses as one JSON object, the
    banners, warnings and shutdown notices included; and no line holds a secret."""
    lines = logged.every_line()
    assert {which for which, _ in lines} >= {"worker stderr", "beat stderr", "cli stderr"}
    for which, line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"{which}: not JSON: {line!r}")
        assert isinstance(value, dict), f"{which}: {line!r}"
        if which != "cli stdout":  # the command's own result; every other line is a log line
            assert {"event", "level", "logger", "timestamp"} <= value.keys(), f"{which}: {line!r}"
        for secret in (API_KEY, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")):
            assert secret not in line, f"{which}: a secret in {line!r}"
    assert logged.cli.out.read_text().count("\n") == 1  # `--json`: one object, on one line
    events = [event.get("event") for event in _events(lines)]
    assert "worker.started" in events  # the banner, as a line
    assert "beat.started" in events
    assert "worker: Warm shutdown (MainProcess)" in events  # Celery's notice, on stdout
    if os.geteuid() == 0:  # Celery warns a worker run as root: as a log line
        warned = [e for e in _events(lines) if e.get("logger") == "py.warnings"]
        assert any("SecurityWarning" in e["event"] for e in warned)


def test_the_jobs_lifecycle_lines_are_found_by_its_id(logged: Logged) -> None:
    """enqueued (the CLI's stderr), submitted, polled, finished, downloaded and the webhook
    attempt (the worker's): each a line named in `event`, with the job's id as a field."""
    mine = [e for e in _events(logged.log_lines()) if e.get("job_id") == logged.job_id]
    by_event = {e["event"]: e for e in mine}
    cli_events = [json.loads(line)["event"] for line in logged.cli.err.read_text().splitlines()]
    assert "job.enqueued" in cli_events
    for name in LIFECYCLE:
        assert name in by_event, f"no {name} line for {logged.job_id}"
    assert by_event["job.submitted"]["remote_task_id"] == logged.result["remote_task_id"]
    assert by_event["job.finished"]["status"] == "succeeded"
    assert by_event["job.finished"]["level"] == "info"
    assert by_event["job.polled"]["level"] == "debug"
    assert by_event["job.downloaded"]["index"] == 0
    attempt = by_event["job.webhook_attempt"]
    assert (attempt["http_status"], attempt["result"], attempt["attempt"]) == (200, "delivered", 1)
    assert all(logged.result["params"]["prompt"] not in json.dumps(e) for e in mine)


def recipe() -> str:
    """The jq filter of docs/logs.md's recipe for following one job."""
    found = re.search(r"imageq worker 2>&1 \| jq -c '([^']+)'", DOCS.read_text())
    assert found, "docs/logs.md has no `imageq worker 2>&1 | jq -c '...'` recipe"
    return found.group(1)


def test_the_recipes_select_as_python_reads_it(logged: Logged) -> None:
    """The recipe's select, done in Python on the worker's output (2>&1): every line it keeps
    is the job's, and they tell its story from submit to webhook."""
    assert recipe() == 'select(.job_id == "JOB_ID")'
    kept = [e for e in _events(logged.worker.lines()) if e.get("job_id") == logged.job_id]
    assert {e["event"] for e in kept} >= {*LIFECYCLE, "job.webhook_attempt"}


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (make browser adds it)")
def test_the_recipe_runs_in_jq(logged: Logged, tmp_path: Path) -> None:
    """The docs' recipe, run by jq on the worker's stdout and stderr together: jq reads every
    line (a line that is not JSON stops it with an error) and keeps exactly the job's lines."""
    combined = tmp_path / "worker.log"
    combined.write_text(logged.worker.out.read_text() + logged.worker.err.read_text())
    jq_filter = recipe().replace("JOB_ID", logged.job_id)
    jq = shutil.which("jq")
    assert jq is not None
    done = subprocess.run(
        [jq, "-c", jq_filter, str(combined)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    selected = [json.loads(line) for line in done.stdout.splitlines()]
    expected = [e for e in _events(logged.worker.lines()) if e.get("job_id") == logged.job_id]
    assert selected == expected
    assert {e["event"] for e in selected} >= {*LIFECYCLE, "job.webhook_attempt"}


def test_beats_lines_are_json_of_celery_beat(logged: Logged) -> None:
    """Beat's own lines (its lock taken, and released as it stops) are `celery.beat`'s."""
    beat = [e["event"] for e in _events(logged.beat.lines()) if e["logger"] == "celery.beat"]
    assert "beat: Acquired lock" in beat
    assert "beat: Releasing lock" in beat


def test_a_refused_start_says_why_in_a_json_line(
    settings_values: dict[str, Any], tmp_path: Path
) -> None:
    """`imageq worker` without an API key exits 1; each line it wrote is JSON, the reason in a
    `critical` one."""
    values = {**settings_values, "observability": {"log_format": "json", "metrics_port": 0}}
    values["api"] = {k: v for k, v in settings_values["api"].items() if k != "key"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEQ_")}
    env.update(settings_env(values))
    done = subprocess.run(
        [*CLI, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [json.loads(line) for line in (done.stdout + done.stderr).splitlines()]
    critical = [line for line in lines if line["level"] == "critical"]
    assert [line["event"] for line in critical] == [
        "imageq worker: set IMAGEQ_API__KEY (the aireiter API key) to start"
    ]
