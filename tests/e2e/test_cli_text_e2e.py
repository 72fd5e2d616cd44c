"""The `imageq` command line as a real process on a real Redis: text from users prints as typed
and never crashes it; a known --job-id is "already known", a different request under it exits 2
and changes neither the record nor the queue; loose input is refused. With Hypothesis, the
same in-process (CliRunner) over a Redis no worker reads. See tests/unit/test_cli_text.py for
the memory-store versions of each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from imageq.cli.main import app
from imageq.config import get_settings
from imageq.devenv.worker_process import WorkerProcess, settings_env
from tests.unit.test_cli_text import MARKUP_TEXT, UNBRACKETED, flat

SUBMIT_QUEUE = "imageq.submit"


@pytest.fixture(scope="module")
def cli_env(settings_values: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **settings_env(settings_values), "COLUMNS": "1000"}


@pytest.fixture(scope="module")
def idle_values(settings_values: dict[str, Any]) -> dict[str, Any]:
    """The settings over databases 10/11 of the test Redis, which no worker reads."""
    server = settings_values["redis"]["broker_url"].rsplit("/", 1)[0]
    return {
        **settings_values,
        "redis": {"broker_url": f"{server}/10", "store_url": f"{server}/11"},
    }


@pytest.fixture
def idle(idle_values: dict[str, Any]) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """The broker and the store no worker reads, emptied."""
    broker = redis.Redis.from_url(idle_values["redis"]["broker_url"])
    store = redis.Redis.from_url(idle_values["redis"]["store_url"])
    broker.flushdb()
    store.flushdb()
    yield broker, store
    broker.close()
    store.close()


def imageq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imageq.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def idle_env(cli_env: dict[str, str], idle_values: dict[str, Any]) -> dict[str, str]:
    return {**cli_env, **settings_env(idle_values)}


# -- as a process -----------------------------------------------------------------------------


def test_a_prompt_with_markup_runs_and_prints_as_typed(
    worker: WorkerProcess, cli_env: dict[str, str]
) -> None:
    """submit --wait and status print "a [red] car on a [bold] road" exactly."""
    prompt = "a [red] car on a [bold] road [/]"
    result = imageq(cli_env, "submit", prompt, "-r", "1:1", "-s", "1K", "--job-id", "markup-1",
                    "--wait")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert prompt in result.stdout
    status = imageq(cli_env, "status", "markup-1")
    assert status.returncode == 0, status.stderr
    assert prompt in status.stdout
    assert "succeeded" in status.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["submit", "p", "-r", "[/x]", "-s", "1K"], "aspect_ratio: '[/x]' is not one of"),
        (["submit", "a\x01b", "-r", "1:1", "-s", "1K"], "U+0001 at character 2"),
        (["submit", "p", "-r", "1:1", "-s", "1K", "-p", "seed=notjson"], "'notjson' is not JSON"),
        (["status", "[/]"], "no job or batch '[/]'"),
        (["cancel", "[bold]"], "no job or batch '[bold]'"),
        (["report", "[/]", "--html", "{tmp}/x.html"], "no batch '[/]'"),
    ],
)
def test_user_errors_exit_without_a_traceback(
    cli_env: dict[str, str],
    idle_values: dict[str, Any],
    tmp_path: Path,
    args: list[str],
    said: str,
) -> None:
    """Refused input: its exit code (2, or 3 for no such id), the reason as typed, no traceback."""
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = imageq(idle_env(cli_env, idle_values), *args)
    assert result.returncode in (2, 3)
    assert said in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bulk_row_with_a_markup_ratio_is_reported_by_line(
    cli_env: dict[str, str], idle_values: dict[str, Any], idle: Any, tmp_path: Path
) -> None:
    """A "[/]" ratio is an invalid row, printed as typed; the "[bold]" prompt's row is queued."""
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"prompt": "a [bold] castle", "aspect_ratio": "1:1", "resolution": "1K"})
        + "\n"
        + json.dumps({"prompt": "lake", "aspect_ratio": "[/]", "resolution": "1K"})
        + "\n"
    )
    result = imageq(idle_env(cli_env, idle_values), "bulk", str(path), "--batch-id", "mk-1")
    assert result.returncode == 1, result.stderr
    assert "line 2: aspect_ratio: '[/]' is not one of" in result.stderr
    assert "1 queued, 0 already known, 1 invalid row(s) skipped" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_reused_job_id_is_known_or_refused_and_nothing_changes(
    cli_env: dict[str, str], idle_values: dict[str, Any], idle: tuple[redis.Redis, redis.Redis]
) -> None:
    """Same request: the id, already known, nothing queued. Other request: exit 2 naming the
    fields; the record and the queue exactly as they were."""
    broker, store = idle
    env = idle_env(cli_env, idle_values)
    base = ["-r", "16:9", "-s", "2K", "--job-id", "reuse-1", "--json"]
    args = [*base, "-m", "order=42"]
    first = imageq(env, "submit", "a castle", *args)
    assert json.loads(first.stdout) == {"job_id": "reuse-1", "already_known": False}
    record = store.hgetall("imageq:job:reuse-1")
    queued = broker.lrange(SUBMIT_QUEUE, 0, -1)
    assert len(queued) == 1
    again = imageq(env, "submit", "a castle", *args)
    assert json.loads(again.stdout) == {"job_id": "reuse-1", "already_known": True}
    assert again.stderr == ""  # with --json, the object says it: "already_known"
    as_text = [arg for arg in args if arg != "--json"]
    assert "reuse-1 already known" in imageq(env, "submit", "a castle", *as_text).stderr
    other = imageq(env, "submit", "a lake", *base, "-m", "order=43")
    assert other.returncode == 2
    error = json.loads(other.stderr)["error"]  # one error object, no traceback
    assert "'reuse-1' is already a job with a different prompt, metadata;" in error["message"]
    assert store.hgetall("imageq:job:reuse-1") == record
    assert broker.lrange(SUBMIT_QUEUE, 0, -1) == queued


# -- in-process, with Hypothesis --------------------------------------------------------------

REDIS_RUNS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def runner(idle_values: dict[str, Any]) -> Iterator[CliRunner]:
    """A CliRunner whose `get_settings()` reads the idle databases' settings."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings_env(idle_values).items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        yield CliRunner(env={"COLUMNS": "1000"})
    get_settings.cache_clear()


@REDIS_RUNS
@given(MARKUP_TEXT)
def test_any_prompt_round_trips_through_redis_as_typed(
    runner: CliRunner, idle: tuple[redis.Redis, redis.Redis], prompt: str
) -> None:
    """Taken or refused as with parentheses for brackets; once taken, status prints it."""
    broker, store = idle
    broker.flushdb()
    store.flushdb()
    given_ = runner.invoke(app, ["submit", prompt, "-r", "1:1", "-s", "1K", "--job-id", "p1"])
    plain = prompt.translate(UNBRACKETED)
    control = runner.invoke(app, ["submit", plain, "-r", "1:1", "-s", "1K", "--job-id", "p2"])
    for result in (given_, control):
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert given_.exit_code == control.exit_code
    if given_.exit_code == 0:
        status = runner.invoke(app, ["status", "p1"])
        assert flat(prompt) in flat(status.stdout)
        assert json.loads(store.hget("imageq:job:p1", "params") or "{}")["prompt"] == prompt
        assert broker.llen(SUBMIT_QUEUE) == 2
    else:
        assert given_.exit_code == 2
        assert store.dbsize() == 0
        assert broker.llen(SUBMIT_QUEUE) == 0


VARIANTS = {
    "prompt": st.sampled_from(["a castle", "a [bold] castle"]),
    "-r": st.sampled_from(["16:9", "1:1"]),
    "-q": st.sampled_from(["high", "HIGH", "low"]),
    "-m": st.sampled_from(["k=v", "k=w"]),
    "-p": st.sampled_from(["seed=1", "seed=2", 'seed="1"']),
}
REQUESTS = st.fixed_dictionaries(VARIANTS)


def submit_args(request: dict[str, str]) -> list[str]:
    options = [
        part for name, value in request.items() if name != "prompt" for part in (name, value)
    ]
    return ["submit", request["prompt"], *options, "-s", "1K", "--job-id", "same", "--json"]


@REDIS_RUNS
@given(REQUESTS, REQUESTS)
def test_a_second_request_under_an_id_is_known_exactly_when_it_is_the_same(
    runner: CliRunner, idle: tuple[redis.Redis, redis.Redis], first: dict[str, str],
    second: dict[str, str],
) -> None:  # fmt: skip
    """Known when every field is the same (quality's case aside), else exit 2 naming exactly
    the fields that differ; the record and the queue never change on the second."""
    broker, store = idle
    broker.flushdb()
    store.flushdb()
    assert runner.invoke(app, submit_args(first)).exit_code == 0
    record, queued = store.hgetall("imageq:job:same"), broker.lrange(SUBMIT_QUEUE, 0, -1)
    result = runner.invoke(app, submit_args(second))
    named = {"prompt": "prompt", "-r": "aspect_ratio", "-q": "quality", "-m": "metadata",
             "-p": "extra_params"}  # fmt: skip
    differ = [
        named[key]
        for key in VARIANTS
        if first[key].lower() != second[key].lower() or (key != "-q" and first[key] != second[key])
    ]
    if differ:
        assert result.exit_code == 2
        order = ["prompt", "aspect_ratio", "quality", "extra_params", "metadata"]
        fields = ", ".join(sorted(differ, key=order.index))
        assert flat(f"already a job with a different {fields};") in flat(result.stderr)
    else:
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"job_id": "same", "already_known": True}
    assert store.hgetall("imageq:job:same") == record
    assert broker.lrange(SUBMIT_QUEUE, 0, -1) == queued
