"""The CLI's JSON contract, in-process: every command takes --json and has a schema file; help
shows flags as flags and every option explained; with --json, output and errors (usage errors
too) are single objects that validate against the schemas."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import redis
from jsonschema import Draft202012Validator
from typer.testing import CliRunner, Result

from imageq.cli.contract import ERROR_TYPES, command_schema, error_object, wants_json
from imageq.cli.exits import Exit
from imageq.cli.main import app
from imageq.config import get_settings
from imageq.ops.top import snapshot, snapshot_json
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from tests.cli_commands import CommandPath, leaf_commands, root_command, schema_name, walk
from tests.conftest import WEBHOOK_SECRET
from tests.unit.memory_queue import MemoryStore, SentTasks
from tests.unit.records import PARAMS

SCHEMA_DIR = Path(__file__).parents[2] / "cli" / "schemas"
COMMANDS = leaf_commands()
EVERYTHING = dict(walk(root_command()))


def label(path: CommandPath) -> str:
    return " ".join(path) or "imageq"


def run(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args))


def validate(instance: Any, *path: str) -> None:
    Draft202012Validator(command_schema(path)).validate(instance)


def one_error(result: Result, code: Exit) -> dict[str, Any]:
    """stderr is exactly one error object with the exit code; nothing on stdout."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    error = json.loads(result.stderr)
    validate(error, "error")
    assert error["error"]["exit_code"] == code
    return dict(error["error"])


@pytest.mark.parametrize("path", COMMANDS, ids=label)
def test_every_command_takes_json(path: CommandPath) -> None:
    """Each command has a --json flag, the parameter named as_json."""
    flags = {param.name: param.opts for param in COMMANDS[path].params}
    assert flags.get("as_json") == ["--json"], f"imageq {label(path)} has no --json (as_json)"


@pytest.mark.parametrize("path", COMMANDS, ids=label)
def test_every_command_has_a_valid_schema(path: CommandPath) -> None:
    """cli/schemas/<path>.json exists and is a draft 2020-12 schema."""
    file = SCHEMA_DIR / f"{schema_name(path)}.json"
    assert file.is_file(), f"imageq {label(path)}: no schema {file.name} in cli/schemas/"
    Draft202012Validator.check_schema(command_schema(path))


def test_every_schema_file_names_a_command() -> None:
    """No schema is left over from a renamed or removed command."""
    names = {schema_name(path) for path in COMMANDS} | {"error"}
    assert {file.stem for file in SCHEMA_DIR.glob("*.json")} <= names


def test_error_schema_lists_the_error_types() -> None:
    """error.json and the code agree on the error types."""
    assert command_schema(["error"])["properties"]["error"]["properties"]["type"]["enum"] == list(
        ERROR_TYPES
    )


def test_shared_definitions_agree() -> None:
    """A definition repeated in several schema files (job, batch, time...) is the same in each."""
    seen: dict[str, Any] = {}
    for file in SCHEMA_DIR.glob("*.json"):
        for name, definition in json.loads(file.read_text()).get("$defs", {}).items():
            assert seen.setdefault(name, definition) == definition, f"$defs/{name} in {file.name}"
    assert {"job", "batch", "time"} <= set(seen)


@pytest.mark.parametrize("path", EVERYTHING, ids=label)
def test_help_shows_flags_as_flags(path: CommandPath) -> None:
    """No option is shown as taking a `<bool>` value; a command's help lists --json."""
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout
    if path in COMMANDS:
        assert "--json" in result.stdout


@pytest.mark.parametrize("path", EVERYTHING, ids=label)
def test_every_parameter_has_help(path: CommandPath) -> None:
    """Every option and argument says what it is for."""
    params = [param for param in EVERYTHING[path].params if not getattr(param, "hidden", False)]
    assert [p.name for p in params if not getattr(p, "help", None)] == []


def test_quality_help_lists_its_values() -> None:
    """submit --help names the allowed qualities, resolutions and ratios."""
    text = " ".join(run("submit", "--help").stdout.split())
    for shown in ("low, medium, high", "1K, 2K, 4K", "1:1, 3:2", "21:9, 9:21"):
        assert shown in text


def test_version_is_the_package_version() -> None:
    """imageq --version prints the installed package's version."""
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"imageq {metadata.version('imageq')}"


@pytest.mark.parametrize("code", list(Exit)[1:], ids=lambda code: code.name)
def test_error_object_validates(code: Exit) -> None:
    """The error object of every error exit code fits error.json."""
    validate(error_object("no job 'x'", code), "error")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "--json"], True),
        (["--json"], True),
        (["submit", "--", "--json"], False),
        (["status", "x"], False),
    ],
)
def test_wants_json(args: list[str], expected: bool) -> None:
    """--json counts before `--` only."""
    assert wants_json(args) is expected


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--json"],  # a missing argument
        ["watch", "x", "--interval", "-1", "--json"],  # a value out of range
        ["top", "--nonsense", "--json"],  # an unknown option
        ["nonsense", "--json"],  # an unknown command
        ["webhooks", "replay", "--json"],  # neither ids nor --all-dead
    ],
)
def test_usage_errors_are_json_with_json(args: list[str]) -> None:
    """What the parser refuses is an error object on stderr, exit 2, when --json was given."""
    assert one_error(run(*args), Exit.INVALID)["type"] in {"usage", "invalid"}


def test_usage_errors_stay_text_without_json() -> None:
    """Without --json the parser's errors are for people, as before."""
    result = run("status")
    assert result.exit_code == Exit.INVALID
    assert "Missing argument" in result.stderr
    assert not result.stderr.lstrip().startswith("{")


@pytest.mark.parametrize("command", ["worker", "scheduler", "demo"])
def test_long_running_commands_refuse_json(command: str) -> None:
    """worker, scheduler and demo have no one object to print: --json is refused, as JSON."""
    assert one_error(run(command, "--json"), Exit.INVALID)["type"] == "unsupported"


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MemoryStore]:
    """The commands over a memory store, no Redis."""
    store = MemoryStore()
    tasks = SentTasks()
    monkeypatch.setattr("imageq.producers.api.connect_store", lambda settings: store)
    monkeypatch.setattr("imageq.producers.api.create_app", lambda settings: tasks)
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("IMAGEQ_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMAGEQ_WEBHOOK__SECRETS", WEBHOOK_SECRET)
    get_settings.cache_clear()
    yield store
    get_settings.cache_clear()


def test_status_of_an_unfinished_job_is_a_job_view(memory: MemoryStore) -> None:
    """A queued job is shown as `imageq.job` with status queued, never as the finished event."""
    submitted = run("submit", "a castle", "-r", "16:9", "-s", "1K", "--json")
    assert submitted.exit_code == 0, submitted.output
    queued = json.loads(submitted.stdout)
    validate(queued, "submit")
    shown = json.loads(run("status", queued["job_id"], "--json").stdout)
    validate(shown, "status")
    assert (shown["type"], shown["status"]) == ("imageq.job", "queued")
    assert shown["timestamps"]["finished_at"] is None


def test_cancel_json(memory: MemoryStore) -> None:
    """cancel --json: one object saying what was cancelled."""
    job_id = json.loads(run("submit", "a fox", "-r", "1:1", "-s", "1K", "--json").stdout)["job_id"]
    result = run("cancel", job_id, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    validate(answer, "cancel")
    assert answer == {"id": job_id, "kind": "job", "cancelled": 1}


@pytest.mark.parametrize("command", ["status", "cancel", "watch"])
def test_unknown_id_is_a_json_error(memory: MemoryStore, command: str) -> None:
    """An unknown id with --json: the error object, exit 3."""
    error = one_error(run(command, "no-such-id", "--json"), Exit.NOT_FOUND)
    assert error == {"type": "not_found", "message": "no job or batch 'no-such-id'", "exit_code": 3}


def test_invalid_submit_is_a_json_error(memory: MemoryStore) -> None:
    """A size the model refuses: the error object, exit 2, naming the allowed ratios."""
    error = one_error(run("submit", "x", "-r", "1:1", "-s", "4K", "--json"), Exit.INVALID)
    assert "16:9, 9:16, 2:1, 1:2, 21:9, 9:21" in error["message"]


def test_top_snapshot_json_validates() -> None:
    """A snapshot with jobs in every state fits top.json, its times ISO 8601."""
    now = 1_800_000_000.0
    done = [
        Job(
            job_id=f"j{n}",
            params=PARAMS,
            created_at=now - 60,
            status=status,
            submitted_at=now - 50,
            finished_at=None if status in {JobStatus.QUEUED, JobStatus.SUBMITTED} else now - 1,
        )
        for n, status in enumerate(JobStatus)
    ]
    letters = {"j9": {"reason": "HTTP 500", "at": now - 2, "attempts": 5}}
    shown = snapshot_json(snapshot(done, letters, now=now, window_s=300), limit=6)
    validate(shown, "top")
    assert shown["at"] == "2027-01-15T08:00:00.000Z"
    assert shown["truncated"] is True
    assert shown["recent_failures"][0]["at"] == "2027-01-15T07:59:59.000Z"


def test_redis_down_is_a_json_error(memory: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis not answering: the error object, type unavailable, exit 5; no traceback."""

    def refuse(*_: Any) -> Job:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1.")

    monkeypatch.setattr(MemoryStore, "get", refuse)
    error = one_error(run("status", "x", "--json"), Exit.UNAVAILABLE)
    assert error["type"] == "unavailable"
    assert "127.0.0.1:1" in error["message"]


def test_invalid_settings_are_a_json_error(
    memory: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ImageqError from below the command (here, a bad setting): the error object, exit 2."""
    monkeypatch.setenv("IMAGEQ_POLLING__INTERVAL_S", "-5")
    get_settings.cache_clear()
    error = one_error(run("status", "x", "--json"), Exit.INVALID)
    assert error["message"].startswith("InvalidSettings: ")
    assert "IMAGEQ_POLLING__INTERVAL_S" in error["message"]
