"""Every `imageq` command with --json, against a real worker, Redis and simulator: its stdout
fits its schema in cli/schemas, and one error of each command is a single error object on
stderr that fits error.json, with the expected exit code.

The commands are found by walking the command tree, so a new command fails here, by name, until
it has its row in CASES: a command line that succeeds and one that fails.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from imageq.cli.contract import command_schema
from imageq.cli.exits import Exit
from imageq.config import Settings
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.ops.webhook_replays import WebhookReplays
from imageq.producers.api import ImageQueue
from imageq.worker.domain.status import JobStatus
from tests.cli_commands import leaf_commands, schema_name
from tests.conftest import DEADLINE_S, wait_for

WAIT_S = DEADLINE_S + 10
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """`ok`: a command line that succeeds (None: the command refuses --json); `error`: one that
    fails with exit code `exit`. Split as a shell would; `{name}` is filled in by `made`."""

    ok: str | None
    error: str
    exit: Exit
    ok_exits: tuple[int, ...] = (Exit.OK,)


# One row per command, keyed by its schema name (the command path joined by '-').
CASES: dict[str, Case] = {
    "submit": Case("submit lighthouse -r 16:9 -s 1K --wait", "submit x -r 7:3 -s 1K", Exit.INVALID),
    "bulk": Case("bulk {jobs_file} --wait", "bulk {tmp}/missing.jsonl", Exit.INVALID),
    "status": Case("status {batch}", "status no-such-id", Exit.NOT_FOUND),
    "watch": Case("watch {job}", "watch no-such-id", Exit.NOT_FOUND),
    "cancel": Case("cancel {running}", "cancel no-such-id", Exit.NOT_FOUND),
    "top": Case("top", "top --window 0", Exit.INVALID),
    "report": Case("report {batch} --html {tmp}/r.html", "report no --html x", Exit.NOT_FOUND),
    # Healthy or not depends on the machine; what is tested here is the shape.
    "health": Case("health", "health --skip nothing", Exit.INVALID, (Exit.OK, 1)),
    "webhooks-dead-letters": Case("webhooks dead-letters", "webhooks dead-letters x", Exit.INVALID),
    "webhooks-replay": Case("webhooks replay {dead}", "webhooks replay nope", Exit.NOT_FOUND),
    "schedules": Case("schedules", "schedules nope", Exit.INVALID),
    "schedules-check": Case(
        "schedules check {schedule_file}", "schedules check {tmp}/none.toml", Exit.NOT_FOUND
    ),
    "metrics-exporter": Case("metrics-exporter --once", "metrics-exporter --port -1", Exit.INVALID),
    "jobs": Case("jobs --batch {batch}", "jobs --status nope", Exit.INVALID),
    "batches": Case("batches", "batches --limit 0", Exit.INVALID),
    "batches-show": Case("batches show {batch}", "batches show no-such-id", Exit.NOT_FOUND),
    "worker": Case(None, "worker", Exit.INVALID),
    "scheduler": Case(None, "scheduler", Exit.INVALID),
    "demo": Case(None, "demo", Exit.INVALID),
    "sizing": Case(
        "sizing --jobs-per-day 100000 --p99-generation-s 120",
        "sizing --jobs-per-day 0 --p99-generation-s 120",
        Exit.INVALID,
    ),
}

COMMANDS = [schema_name(path) for path in leaf_commands()]


def case_for(name: str) -> Case:
    if name not in CASES:
        pytest.fail(f"command {name!r} has no row in CASES of {Path(__file__).name}: add one")
    return CASES[name]


def test_every_command_has_a_row() -> None:
    """No command is left out of CASES, and no row names a command that is gone."""
    assert sorted(set(COMMANDS) - set(CASES)) == [], "commands without a row in CASES"
    assert sorted(set(CASES) - set(COMMANDS)) == [], "rows in CASES for no command"


class Made(dict[str, str]):
    """Fills `{name}` in arguments, making each value on first use."""

    def __init__(self, makers: dict[str, Callable[[], str]]) -> None:
        super().__init__()
        self._makers = makers

    def __missing__(self, key: str) -> str:
        self[key] = self._makers[key]()
        return self[key]


@pytest.fixture(scope="module")
def cli_env(settings_values: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **settings_env(settings_values)}


@pytest.fixture(scope="module")
def made(
    worker: WorkerProcess,
    queue: ImageQueue,
    receiver: WebhookReceiver,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Made:
    tmp = tmp_path_factory.mktemp("cli-json")

    def job() -> str:
        job_id = queue.enqueue("a harbour", aspect_ratio="1:1", resolution="1K")
        queue.wait(job_id, timeout_s=WAIT_S)
        return job_id

    def running() -> str:  # the simulator finishes it after the deadline: still running
        return queue.enqueue("sim:latency=30 slow", aspect_ratio="1:1", resolution="1K")

    def batch() -> str:
        rows = [{"prompt": "a tree", "aspect_ratio": "4:5", "resolution": "1K"}] * 2
        batch_id = queue.enqueue_many(rows).batch_id
        wait_for(lambda: queue.batch(batch_id).is_complete, timeout_s=WAIT_S, what="the batch")
        return batch_id

    def dead() -> str:
        path = "/hooks/cli-json-dead"
        receiver.fail_first[path] = 1000
        url = f"{receiver.base_url}{path}"
        job_id = queue.enqueue("a bell", aspect_ratio="1:1", resolution="1K", webhook_url=url)
        replays = WebhookReplays(settings)
        wait_for(lambda: job_id in replays.dead_letters(), timeout_s=WAIT_S, what="dead letter")
        return job_id

    def jobs_file() -> str:
        file = tmp / "jobs.jsonl"
        file.write_text('{"prompt": "a boat", "aspect_ratio": "16:9", "resolution": "1K"}\n')
        return str(file)

    values = Made(
        {
            "job": job,
            "running": running,
            "batch": batch,
            "dead": dead,
            "jobs_file": jobs_file,
            "tmp": lambda: str(tmp),
            "schedule_file": lambda: str(REPO / "examples" / "schedule.toml"),
        }
    )
    values["dead"]  # made first, so that dead-letters has one to show
    return values


def imageq(env: dict[str, str], line: str, made: Made) -> subprocess.CompletedProcess[str]:
    filled = [arg.format_map(made) for arg in shlex.split(line)]
    return subprocess.run(
        [sys.executable, "-m", "imageq.cli", *filled, "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def fits(text: str, name: str) -> dict[str, Any]:
    value = json.loads(text)
    Draft202012Validator(command_schema([name])).validate(value)
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("name", COMMANDS)
def test_json_output_fits_the_schema(name: str, cli_env: dict[str, str], made: Made) -> None:
    """Success with --json: stdout is one object (a line per change for watch) fitting the
    command's schema."""
    case = case_for(name)
    if case.ok is None:  # runs until stopped: --json is refused, and says so as JSON
        refused = imageq(cli_env, case.error, made)
        assert json.loads(refused.stderr)["error"]["type"] == "unsupported"
        assert refused.stdout == ""
        return
    result = imageq(cli_env, case.ok, made)
    assert result.returncode in case.ok_exits, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 or (name == "watch" and lines), result.stdout
    for line in lines:
        fits(line, name)


@pytest.mark.parametrize("name", COMMANDS)
def test_json_error_fits_the_error_schema(name: str, cli_env: dict[str, str], made: Made) -> None:
    """An error with --json: stderr is one error object with the exit code it exits with; stdout
    holds nothing, or the command's own object (a replay that did part of its work)."""
    case = case_for(name)
    result = imageq(cli_env, case.error, made)
    assert result.returncode == case.exit, (result.stdout, result.stderr)
    error = fits(result.stderr, "error")["error"]
    assert error["exit_code"] == case.exit
    if result.stdout:
        fits(result.stdout, name)


def test_cancel_json_says_what_it_cancelled(
    cli_env: dict[str, str], made: Made, queue: ImageQueue
) -> None:
    """cancel --json of a running job: exit 0, one job cancelled, and the job is cancelled."""
    job_id = queue.enqueue("sim:latency=30 slow", aspect_ratio="1:1", resolution="1K")
    result = imageq(cli_env, f"cancel {job_id}", made)
    assert result.returncode == Exit.OK, result.stderr
    assert json.loads(result.stdout) == {"id": job_id, "kind": "job", "cancelled": 1}
    assert queue.get(job_id).status == JobStatus.CANCELLED


def test_dead_letter_times_are_iso(cli_env: dict[str, str], made: Made) -> None:
    """dead-letters --json shows the time given up as ISO 8601 UTC, not epoch seconds."""
    shown = imageq(cli_env, "webhooks dead-letters", made).stdout
    letters = fits(shown, "webhooks-dead-letters")
    assert letters[made["dead"]]["at"].endswith("Z")
