"""Health checks against a real Redis, the simulator and a worker: the exit codes of
`imageq health`, a refused key, an unreachable broker, no worker listening."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from imageq.cli.checks import health_command
from imageq.config import Settings, get_settings
from imageq.devenv.redis_server import RedisServer, free_port
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.ops.health import Check, run_checks
from tests.conftest import API_KEY

TIMEOUT_S = 1.0
# No worker consumes from this database of the session's Redis, so none hears a ping there.
UNUSED_DB = 14
REDIS_PASSWORD = "s3cret-redis-pw"


def health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`imageq health ARGS`, the command the image's healthcheck runs, from this venv."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("imageq")), "health", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def by_name(checks: Sequence[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def with_broker(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={"redis": settings.redis.model_copy(update={"broker_url": url})}
    )


@pytest.fixture(scope="module")
def health_env(settings_values: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **settings_env(settings_values)}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.e2e
def test_all_healthy_exits_0(worker: WorkerProcess, health_env: dict[str, str]) -> None:
    """Redis, the simulator and a worker up, no scheduled runs: five passing checks, exit 0."""
    result = health(health_env, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert [(check["name"], check["ok"]) for check in report["checks"]] == [
        ("broker", True), ("store", True), ("api", True), ("workers", True), ("schedules", True),
    ]  # fmt: skip
    assert API_KEY not in result.stdout + result.stderr


@pytest.mark.e2e
def test_wrong_api_key_fails_the_api_check(health_env: dict[str, str]) -> None:
    """A key the API refuses: the api check fails, exit 1, and the key is printed nowhere."""
    wrong_key = "sk-wrong-5d1e-never-print-me"
    env = {**health_env, "IMAGEQ_API__KEY": wrong_key}
    result = health(env, "--json", "--skip", "workers")
    assert result.returncode == 1, result.stdout + result.stderr
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["api"]["ok"] is False
    assert "refused the key (HTTP 401)" in checks["api"]["detail"]
    assert checks["broker"]["ok"]
    assert checks["store"]["ok"]
    assert wrong_key not in result.stdout + result.stderr
    assert "workers" not in checks


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_broker_fails_within_the_timeout(
    settings: Settings, kind: str, request: pytest.FixtureRequest
) -> None:
    """No broker at the URL (nothing listening, or a server that never answers): the broker
    and workers checks fail within the timeout, the store still passes, no password shown."""
    port = free_port() if kind == "refused" else request.getfixturevalue("silent_port")
    broken = with_broker(settings, f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0")
    started = time.monotonic()
    checks = by_name(run_checks(broken, skip=["api"], timeout_s=TIMEOUT_S))
    elapsed_s = time.monotonic() - started
    assert not checks["broker"].ok
    assert not checks["workers"].ok
    assert checks["store"].ok
    assert checks["broker"].duration_s < TIMEOUT_S + 0.5
    assert elapsed_s < TIMEOUT_S + 1.5, "the checks run side by side, each bounded"
    assert all(REDIS_PASSWORD not in check.detail for check in checks.values())


@pytest.mark.e2e
def test_no_worker_listening_fails_the_workers_check(
    settings: Settings, worker: WorkerProcess, redis_server: RedisServer
) -> None:
    """A worker runs, but on another database: the broker answers, no worker does."""
    lonely = with_broker(settings, redis_server.url(UNUSED_DB))
    checks = by_name(run_checks(lonely, skip=["api"], timeout_s=TIMEOUT_S))
    assert checks["broker"].ok
    assert not checks["workers"].ok
    assert "no worker answered" in checks["workers"].detail


@pytest.fixture
def cli_settings(
    monkeypatch: pytest.MonkeyPatch, settings_values: dict[str, Any]
) -> Iterator[None]:
    """The session's settings in this process's environment, read afresh by get_settings."""
    for name, value in settings_env(settings_values).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.e2e
@pytest.mark.usefixtures("cli_settings")
def test_health_command_exit_codes() -> None:
    """The typer command: 0 when the checks kept pass, 2 for a check that does not exist."""
    app = typer.Typer()
    app.command("health")(health_command)
    runner = CliRunner()
    skipped = ["--skip", "api", "--skip", "workers", "--skip", "schedules"]
    passed = runner.invoke(app, ["--json", *skipped])
    assert passed.exit_code == 0, passed.output
    assert [check["name"] for check in json.loads(passed.output)["checks"]] == ["broker", "store"]
    assert runner.invoke(app, ["--skip", "bogus"]).exit_code == 2
