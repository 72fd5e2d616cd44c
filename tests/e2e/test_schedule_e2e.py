"""Scheduled bulk runs with a real Redis: a file without valid rows gets its manifest and no
batch, and a real beat (celery-redbeat) fires batches on a short schedule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from imageq.config import Settings
from imageq.devenv.worker_process import BeatProcess, WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.producers.scheduling.scheduled_run import SCHEDULED_RUN_TASK, run_scheduled
from imageq.simulator.server import SimulatorServer
from imageq.worker.app import create_app
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.status import JobStatus
from imageq.worker.runtime import build_runtime
from tests.conftest import wait_for
from tests.unit.test_schedule import at, run_table


def test_file_without_valid_rows_gets_its_manifest_and_no_batch(
    settings_values: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every row refused: the manifest lists them at once and no batch is made; a run no
    longer in the schedule fails its tick, logged."""
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\nnot json\n')
    (tmp_path / "schedule.toml").write_text(run_table(name="empty", file="bad.jsonl", every_s=60))
    values = {
        **settings_values,
        "redis": {**settings_values["redis"], "key_prefix": "imageq-sched-empty"},
        "schedule": {"file": str(tmp_path / "schedule.toml"), "manifest_dir": str(tmp_path)},
    }
    settings = Settings(_env_file=None, **values)
    rt, queue = build_runtime(settings), ImageQueue(settings)
    tick_at = at("2026-01-05T10:00:30")
    assert run_scheduled(rt, queue, "empty", tick_at=tick_at) is None
    manifest = tmp_path / "empty-20260105T1000Z.jsonl"
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [(entry["line"], entry["status"]) for entry in entries] == [
        (1, "invalid"),
        (2, "invalid"),
    ]
    assert rt.store.get_batch("empty-20260105T1000Z") is None
    assert run_scheduled(rt, queue, "gone", tick_at=tick_at) is None
    assert "scheduled run gone: tick failed (unknown_run): no run named 'gone'" in caplog.text


# End to end: a worker and a beat of their own, on queues and keys of their own, so the
# session's worker (which has no schedule file) never takes their messages.

EVERY_S = 2
ROWS = [
    {"prompt": "lighthouse at night", "aspect_ratio": "16:9", "resolution": "1K"},
    {"prompt": "bad ratio", "aspect_ratio": "7:3", "resolution": "1K"},
    {"prompt": "fox in snow", "aspect_ratio": "1:1", "resolution": "1K"},
    {"prompt": "harbour", "aspect_ratio": "3:2", "resolution": "1K", "quality": "low"},
]
VALID_LINES = [1, 3, 4]


@dataclass(frozen=True)
class Scheduled:
    settings: Settings
    queue: ImageQueue
    worker: WorkerProcess
    beat: BeatProcess
    manifest_dir: Path
    started_at: float


@pytest.fixture(scope="module")
def scheduled(
    settings_values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scheduled]:
    root = tmp_path_factory.mktemp("scheduled")
    (root / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    (root / "schedule.toml").write_text(run_table(name="fast", file="rows.jsonl", every_s=EVERY_S))
    queues = {
        kind: f"sched.{kind}" for kind in ("submit", "bulk_submit", "poll", "download", "notify")
    }
    values = {
        **settings_values,
        "redis": {**settings_values["redis"], "key_prefix": "imageq-sched"},
        "worker": {**settings_values["worker"], **{f"{k}_queue": q for k, q in queues.items()}},
        "schedule": {
            "file": str(root / "schedule.toml"),
            "manifest_dir": str(root / "manifests"),
            "lock_timeout_s": 4,
            "loop_interval_s": 0.5,
        },
    }
    settings = Settings(_env_file=None, **values)
    env = settings_env(values)
    with (
        WorkerProcess(env, root / "worker.log", name="scheduled") as worker,
        BeatProcess(env, root / "beat.log") as beat,
    ):
        wait_for(lambda: "beat: Acquired lock" in beat.log(), timeout_s=30, what="beat's lock")
        started_at = datetime.now(UTC).timestamp()
        yield Scheduled(
            settings, ImageQueue(settings), worker, beat, root / "manifests", started_at
        )


def batches_of(scheduled: Scheduled, name: str) -> dict[str, Batch]:
    """Batch id -> batch, for every batch of run `name` so far."""
    prefix = f"{scheduled.settings.redis.key_prefix}:batch:"
    client = redis.Redis.from_url(scheduled.settings.redis.store_url)
    ids = [key.decode().removeprefix(prefix) for key in client.scan_iter(f"{prefix}{name}-*")]
    return {
        batch_id: scheduled.queue.batch(batch_id)
        for batch_id in ids
        if not batch_id.endswith(":jobs")
    }


def slot_at(batch_id: str) -> float:
    return (
        datetime.strptime(batch_id.rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ")
        .replace(tzinfo=UTC)
        .timestamp()
    )


@pytest.mark.e2e
def test_schedule_fires_a_batch_on_time(scheduled: Scheduled, simulator: SimulatorServer) -> None:
    """A 2-second run fires within its first period; its valid rows succeed, each submitted
    once, and its manifest (valid and invalid rows) lands in the manifest directory."""
    batches = wait_for(
        lambda: batches_of(scheduled, "fast"), timeout_s=EVERY_S + 10, what="a first batch"
    )
    first = min(batches, key=slot_at)
    created = batches[first].created_at
    # On time: made within the slot it is named after, one period after beat started at most.
    assert 0 <= created - slot_at(first) < EVERY_S + 0.5
    assert created - scheduled.started_at < EVERY_S + 2.0
    assert batches[first].name == "fast"
    batch = wait_for(
        lambda: (found := scheduled.queue.batch(first)).is_complete and found,
        timeout_s=15,
        what=f"batch {first} to complete",
    )
    jobs = scheduled.queue.batch_jobs(first)
    assert batch.total == len(VALID_LINES) == len(jobs)
    assert sorted(jobs) == VALID_LINES
    assert {job.status for job in jobs.values()} == {JobStatus.SUCCEEDED}
    manifest = scheduled.manifest_dir / f"{first}.jsonl"
    wait_for(manifest.exists, timeout_s=10, what=f"manifest {manifest}")
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [(entry["line"], entry["status"]) for entry in entries] == [
        (1, "succeeded"),
        (2, "invalid"),
        (3, "succeeded"),
        (4, "succeeded"),
    ]
    assert "aspect_ratio" in entries[1]["error"]["message"]
    submits = simulator.stats()["submits_by_out_task_id"]
    assert [submits.get(job.job_id) for job in jobs.values()] == [1, 1, 1]


@pytest.mark.e2e
def test_two_slots_two_batches_and_a_resent_tick_submits_nothing(
    scheduled: Scheduled, simulator: SimulatorServer
) -> None:
    """Ticks of two slots make two batches; the same slot's tick sent again (with the first
    tick's time) resumes its batch and submits nothing new."""
    batches = wait_for(
        lambda: len(found := batches_of(scheduled, "fast")) >= 2 and found,
        timeout_s=2 * EVERY_S + 10,
        what="batches of two slots",
    )
    first, second = sorted(batches, key=slot_at)[:2]
    assert slot_at(second) - slot_at(first) >= EVERY_S
    wait_for(lambda: scheduled.queue.batch(first).is_complete, timeout_s=15, what="first batch")
    before = simulator.stats()["submits_by_out_task_id"]
    tick_at = datetime.fromtimestamp(slot_at(first) + 0.5, UTC).isoformat()
    app = create_app(scheduled.settings)
    app.send_task(SCHEDULED_RUN_TASK, args=["fast", tick_at])
    handled = wait_for(
        lambda: _resent_lines(scheduled.worker.log(), first),
        timeout_s=10,
        what="the re-sent tick to be handled",
    )
    assert "0 queued, 3 already known, 1 invalid row(s)" in handled
    after = simulator.stats()["submits_by_out_task_id"]
    jobs = scheduled.queue.batch_jobs(first)
    assert [after.get(job.job_id) for job in jobs.values()] == [1, 1, 1]
    assert {job_id: after[job_id] for job_id in before} == before
    assert first in batches_of(scheduled, "fast")


def _resent_lines(log: str, batch_id: str) -> str:
    """The worker's log lines about a tick that found batch `batch_id` already queued."""
    return "\n".join(
        line
        for line in log.splitlines()
        if f"batch {batch_id} (slot" in line and "0 queued" in line
    )
