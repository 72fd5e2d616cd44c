"""What Flower is fed: the worker command's heartbeats, the task-events setting, and a worker
configuration that shows no Redis password (Flower's worker page and `celery inspect conf`)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from redbeat.schedulers import RedBeatConfig, get_redis
from typer.testing import CliRunner

from imageq.cli import main as cli
from imageq.config import Settings
from imageq.worker.app import celery_config, create_app
from imageq.worker.task_events import BatchSafeDispatcher

PASSWORD = "s3cr3t/pw@x"
QUOTED = "s3cr3t%2Fpw%40x"


@pytest.mark.parametrize("task_events", [False, True])
def test_task_events_follow_the_setting(task_events: bool) -> None:
    """`worker.task_events` is Celery's `worker_send_task_events` (off unless set)."""
    settings = Settings(_env_file=None, worker={"task_events": task_events})
    assert celery_config(settings)["worker_send_task_events"] is task_events
    assert celery_config(Settings(_env_file=None))["worker_send_task_events"] is False


def test_the_shown_configuration_holds_no_redis_password() -> None:
    """What `inspect conf` answers (Celery's censored table) has no password in any value."""
    url = f"redis://:{QUOTED}@redis.internal:6379/0"
    app = create_app(Settings(_env_file=None, redis={"broker_url": url}))
    shown = json.dumps(app.conf.table(with_defaults=False), default=repr)
    assert PASSWORD not in shown
    assert QUOTED not in shown


def test_redbeat_still_connects_with_the_password() -> None:
    """Beat's redbeat client gets the user and password from the options, unquoted."""
    url = f"rediss://beat:{QUOTED}@redis.internal:6380/0"
    app = create_app(Settings(_env_file=None, redis={"broker_url": url}))
    assert RedBeatConfig(app).redis_url == "rediss://redis.internal:6380/0"
    client = get_redis(app)  # builds a pool; connects only on the first command
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("beat", PASSWORD)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("redis.internal", 6380, 0)


def test_worker_command_keeps_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """`imageq worker` runs Celery without gossip or mingle but with heartbeats, which Flower
    lists workers by; extra arguments go through."""
    ran: list[list[str]] = []

    def fake_execve(_path: str, argv: list[str], _env: dict[str, str]) -> Any:
        ran.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", fake_execve)
    result = CliRunner().invoke(cli.app, ["worker", "-c", "4"])
    assert result.exit_code == 0, result.output
    (argv,) = ran
    assert argv[argv.index("-A") : argv.index("-A") + 3] == ["-A", "imageq.worker.app", "worker"]
    assert {"--without-gossip", "--without-mingle"} <= set(argv)
    assert "--without-heartbeat" not in argv
    assert argv[-2:] == ["-c", "4"]


class AppendingProducer:
    """A producer that, while 'writing to the socket', lets another thread add an event."""

    def __init__(self, buffer: list[Any], late: dict[str, Any]) -> None:
        self.sent: list[Any] = []
        self._buffer, self._late = buffer, late

    def publish(self, body: Any, **_: Any) -> None:
        self.sent.append(list(body))
        if self._late not in self._buffer and self._late not in body:
            self._buffer.append(self._late)


def test_events_added_during_a_flush_are_kept_for_the_next() -> None:
    """A task event appended while a batch is being published is sent with the next batch,
    not dropped (Celery 5.6.3 dropped it: celery/celery#10435)."""
    app = create_app(Settings(_env_file=None))
    dispatcher = app.events.Dispatcher(connection=None, enabled=False)
    assert isinstance(dispatcher, BatchSafeDispatcher)
    buffer = dispatcher._group_buffer["task"]
    first, late = {"type": "task-received"}, {"type": "task-succeeded"}
    buffer.append(first)
    dispatcher.producer = AppendingProducer(buffer, late)
    dispatcher.flush()
    assert buffer == [late]
    dispatcher.flush()
    assert dispatcher.producer.sent == [[first], [late]]
    assert buffer == []
