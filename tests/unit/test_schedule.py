"""Scheduled bulk runs: the schedule file, the slot a tick belongs to, the beat's configuration,
and, end to end, a real beat (celery-redbeat) firing batches on a short schedule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.schedules import crontab, schedule
from pydantic import ValidationError
from redbeat.schedulers import RedBeatConfig

from imageq.config import Settings
from imageq.devenv.worker_process import BeatProcess, WorkerProcess, settings_env
from imageq.producers import ImageQueue
from imageq.producers.scheduling.run import SCHEDULED_RUN_TASK, run_scheduled
from imageq.producers.scheduling.schedule_file import (
    ScheduledRun,
    ScheduleError,
    batch_id_for,
    load_schedule,
    parse_schedule,
    slot_of,
)
from imageq.producers.scheduling.scheduler import beat_entries
from imageq.simulator.server import SimulatorServer
from imageq.worker.app import celery_config, create_app
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.status import JobStatus
from imageq.worker.runtime import build_runtime
from tests.conftest import wait_for

GOOD = """\
[[run]]
name = "nightly"
file = "prompts.jsonl"
cron = "0  2 * * *"
webhook = "https://example.com/hooks/nightly"

[[run]]
name = "hourly.csv"
file = "/srv/bulk/hourly.csv"
every_s = 3600
"""


def test_parse_good_file() -> None:
    """Both kinds of run; relative files from the schedule's directory; cron normalised."""
    runs = parse_schedule(GOOD, base_dir=Path("/etc/imageq"))
    assert runs == [
        ScheduledRun(
            "nightly",
            Path("/etc/imageq/prompts.jsonl"),
            cron="0 2 * * *",
            webhook="https://example.com/hooks/nightly",
        ),
        ScheduledRun("hourly.csv", Path("/srv/bulk/hourly.csv"), every_s=3600),
    ]


def test_empty_file_has_no_runs() -> None:
    """A file without [[run]] tables schedules nothing."""
    assert parse_schedule("# nothing yet\n", base_dir=Path()) == []


def run_table(**fields: Any) -> str:
    return "[[run]]\n" + "".join(
        f"{name} = {json.dumps(value)}\n" for name, value in fields.items()
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[run]\nname = 1", "schedule: not valid TOML"),
        ("title = 'x'\n", "schedule: unknown key(s) title"),
        ("run = 3\n", "schedule: run: must be [[run]] tables"),
        (run_table(file="a.jsonl", every_s=60), "run 1: name: required"),
        (run_table(name="bad name", file="a.jsonl", every_s=60), "run 1 (bad name): name:"),
        (run_table(name="x" * 65, file="a.jsonl", every_s=60), "name: required, at most 64"),
        (run_table(name="a", every_s=60), "run 1 (a): file: required"),
        (run_table(name="a", file=" ", every_s=60), "run 1 (a): file: required"),
        (run_table(name="a", file="a.jsonl"), "run 1 (a): cron, every_s: give exactly one"),
        (run_table(name="a", file="f", cron="0 2 * * *", every_s=60), "give exactly one"),
        (run_table(name="a", file="f", cron="0 2 * *"), "run 1 (a): cron: must be 5 fields"),
        (run_table(name="a", file="f", cron="0 0 2 * * *"), "cron: must be 5 fields"),
        (run_table(name="a", file="f", cron="61 2 * * *"), "cron: '61 2 * * *' is not valid"),
        # croniter takes 7 for Sunday, Celery's crontab (which fires the ticks) does not.
        (run_table(name="a", file="f", cron="0 2 * * 7"), "cron: '0 2 * * 7' is not valid"),
        (run_table(name="a", file="f", cron="0 2 L * *"), "cron: '0 2 L * *' is not valid"),
        (run_table(name="a", file="f", every_s=0), "run 1 (a): every_s: must be a whole number"),
        (run_table(name="a", file="f", every_s=1.5), "every_s: must be a whole number"),
        (run_table(name="a", file="f", every_s="60"), "every_s: must be a whole number"),
        (run_table(name="a", file="f", every_s=True), "every_s: must be a whole number"),
        (run_table(name="a", file="f", every_s=60, webhook=""), "run 1 (a): webhook: must be"),
        (run_table(name="a", file="f", every_s=60, prompt="x"), "run 1 (a): prompt: unknown"),
        (
            run_table(name="a", file="f", every_s=60) + run_table(name="a", file="g", every_s=9),
            "run 2 (a): name: 'a' is already used",
        ),
        (
            run_table(name="a", file="f", every_s=60) + run_table(name="b", file="g"),
            "run 2 (b): cron, every_s",
        ),
    ],
)
def test_invalid_file_names_run_and_field(text: str, message: str) -> None:
    """Each fault is refused with a message naming the run and the field."""
    with pytest.raises(ScheduleError) as raised:
        parse_schedule(text, base_dir=Path())
    assert message in str(raised.value)


def test_load_schedule_reads_relative_to_the_file(tmp_path: Path) -> None:
    """load_schedule resolves bulk files against the schedule file's directory."""
    path = tmp_path / "schedule.toml"
    path.write_text(run_table(name="a", file="rows.jsonl", every_s=60))
    assert load_schedule(path) == [ScheduledRun("a", tmp_path / "rows.jsonl", every_s=60)]


def test_load_schedule_refuses_non_utf8_and_raises_for_missing(tmp_path: Path) -> None:
    """Not UTF-8: ScheduleError naming the file; missing: FileNotFoundError."""
    path = tmp_path / "schedule.toml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ScheduleError, match=r"schedule\.toml: not UTF-8"):
        load_schedule(path)
    with pytest.raises(FileNotFoundError):
        load_schedule(tmp_path / "missing.toml")


NIGHTLY = ScheduledRun("nightly", Path("p.jsonl"), cron="0 2 * * *")
HOURLY = ScheduledRun("hourly", Path("p.jsonl"), every_s=3600)
FAST = ScheduledRun("fast", Path("p.jsonl"), every_s=2)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("run", "now", "slot", "batch_id"),
    [
        (NIGHTLY, "2026-01-05T02:00:00.300", "2026-01-05T02:00", "nightly-20260105T0200Z"),
        # A duplicated tick a few seconds later, and a late one hours later: the same batch.
        (NIGHTLY, "2026-01-05T02:00:07", "2026-01-05T02:00", "nightly-20260105T0200Z"),
        (NIGHTLY, "2026-01-05T17:45:00", "2026-01-05T02:00", "nightly-20260105T0200Z"),
        (NIGHTLY, "2026-01-06T01:59:59", "2026-01-05T02:00", "nightly-20260105T0200Z"),
        # The next slot: a new batch.
        (NIGHTLY, "2026-01-06T02:00:00", "2026-01-06T02:00", "nightly-20260106T0200Z"),
        (HOURLY, "2026-01-05T10:00:00.200", "2026-01-05T10:00", "hourly-20260105T1000Z"),
        (HOURLY, "2026-01-05T10:00:04", "2026-01-05T10:00", "hourly-20260105T1000Z"),
        (HOURLY, "2026-01-05T10:59:59.900", "2026-01-05T10:00", "hourly-20260105T1000Z"),
        (HOURLY, "2026-01-05T11:00:00", "2026-01-05T11:00", "hourly-20260105T1100Z"),
        # Periods under a minute (or not whole minutes) name their slots to the second.
        (FAST, "2026-01-05T10:00:01.500", "2026-01-05T10:00:00", "fast-20260105T100000Z"),
        (FAST, "2026-01-05T10:00:02", "2026-01-05T10:00:02", "fast-20260105T100002Z"),
    ],
)
def test_slot_and_batch_id(run: ScheduledRun, now: str, slot: str, batch_id: str) -> None:
    """A tick's slot is its run's latest fire time at or before it; the id names the slot."""
    found = slot_of(run, at(now))
    assert found == at(slot)
    assert batch_id_for(run, found) == batch_id


def test_every_s_not_whole_minutes_names_seconds() -> None:
    """every_s = 90: slots at :00 and :30 seconds get distinct ids."""
    run = ScheduledRun("r", Path("p"), every_s=90)
    first, second = slot_of(run, at("2026-01-05T00:00:10")), slot_of(run, at("2026-01-05T00:01:40"))
    assert (batch_id_for(run, first), batch_id_for(run, second)) == (
        "r-20260105T000000Z",
        "r-20260105T000130Z",
    )


def test_slot_of_takes_any_timezone_but_not_naive() -> None:
    """Cron is UTC whatever the tick's zone; a naive time is refused."""
    paris = datetime(2026, 1, 5, 3, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert slot_of(NIGHTLY, paris) == at("2026-01-05T02:00")
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_of(NIGHTLY, datetime(2026, 1, 5, 2, 0))


@pytest.mark.parametrize(
    "expression",
    ["0 2 * * *", "*/15 * * * *", "30 6 1 * mon", "0 0 29 2 *", "0 12 * * sun", "5 4 1-7 * fri"],
)
def test_slots_are_the_times_celery_fires_at(expression: str) -> None:
    """For Celery's own next fire times (day of month AND day of week), each tick's slot is
    the fire time it was sent for, and a second before it the previous one."""
    run = ScheduledRun("r", Path("p"), cron=expression)
    cron = crontab.from_string(expression)
    fires, now = [], at("2026-01-01T00:00")
    for _ in range(4):
        cron.nowfun = lambda now=now: now
        now += cron.remaining_estimate(now)
        fires.append(now)
    for fire in fires:
        assert slot_of(run, fire) == fire
        assert slot_of(run, fire + timedelta(seconds=3)) == fire
    for previous, fire in pairwise(fires):
        assert slot_of(run, fire - timedelta(seconds=1)) == previous


def test_beat_entries_one_per_run() -> None:
    """Each run becomes an entry sending imageq.scheduled_run with its name."""
    entries = beat_entries([NIGHTLY, FAST])
    assert set(entries) == {"run:nightly", "run:fast"}
    assert entries["run:nightly"]["task"] == SCHEDULED_RUN_TASK
    assert entries["run:nightly"]["args"] == ["nightly"]
    assert entries["run:nightly"]["schedule"] == crontab(minute="0", hour="2")
    every = entries["run:fast"]["schedule"]
    assert isinstance(every, schedule)
    assert every.run_every == timedelta(seconds=2)
    assert every.relative


def test_celery_config_sets_up_redbeat() -> None:
    """Beat runs redbeat under imageq's key prefix with the configured lock and loop; redbeat
    reads its own keys (no fallback to the broker's options: no deprecation warning)."""
    settings = Settings(
        _env_file=None,
        redis={"broker_url": "redis://127.0.0.1:9/0", "key_prefix": "iq"},
        schedule={"lock_timeout_s": 12, "loop_interval_s": 2},
    )
    config = celery_config(settings)
    assert config["beat_scheduler"] == "imageq.producers.scheduling.scheduler:ScheduleFileScheduler"
    assert config["beat_max_loop_interval"] == 2
    assert (config["timezone"], config["enable_utc"]) == ("UTC", True)
    redbeat = RedBeatConfig(create_app(settings))
    assert redbeat.redis_url == "redis://127.0.0.1:9/0"
    assert redbeat.lock_key == "iq:redbeat::lock"
    assert redbeat.schedule_key == "iq:redbeat::schedule"
    assert redbeat.lock_timeout == 12


def test_lock_must_outlast_two_loops() -> None:
    """A lock timeout under twice the loop interval is refused."""
    with pytest.raises(ValidationError, match="lock_timeout_s"):
        Settings(_env_file=None, schedule={"lock_timeout_s": 5, "loop_interval_s": 5})


def test_file_without_valid_rows_gets_its_manifest_and_no_batch(
    settings_values: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every row refused: the manifest lists them at once and no batch is made; a run no
    longer in the schedule is dropped, logged."""
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
    assert "scheduled run gone: not in" in caplog.text


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
