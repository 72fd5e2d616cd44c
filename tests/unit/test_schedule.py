"""Scheduled bulk runs: the schedule file, the slot a tick belongs to, the beat's configuration;
a real beat firing batches is tests/e2e/test_schedule_e2e.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from celery.schedules import crontab, schedule
from pydantic import ValidationError
from redbeat.schedulers import RedBeatConfig

from imageq.config import Settings
from imageq.producers.scheduling.schedule_file import (
    ScheduledRun,
    ScheduleError,
    batch_id_for,
    load_schedule,
    parse_schedule,
    slot_of,
)
from imageq.producers.scheduling.scheduled_run import SCHEDULED_RUN_TASK
from imageq.producers.scheduling.scheduler import beat_entries
from imageq.worker.app import celery_config, create_app

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
