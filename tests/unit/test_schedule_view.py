"""Scheduled runs seen from outside: next runs, fingerprints, every fault of a file, whether a
worker can run a tick, the `imageq schedules` objects and the health verdict; all pure.
A real beat and worker are tests/e2e/test_schedules_e2e.py."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from celery.schedules import crontab, schedule
from rich.console import Console

from imageq.cli.schedules import check_text, schedules_text
from imageq.config import ScheduleSettings
from imageq.producers.scheduling.held_schedule import TickFailed, hold_schedule, runnable
from imageq.producers.scheduling.schedule_file import (
    ScheduledRun,
    next_runs,
    read_runs,
    run_fingerprint,
    schedule_fingerprint,
)
from imageq.producers.scheduling.schedule_health import schedule_verdict
from imageq.producers.scheduling.schedule_records import Tick, TickFailure
from imageq.producers.scheduling.schedule_view import check_view, schedules_view
from imageq.producers.scheduling.scheduler import published_schedule
from imageq.worker.domain.batch import Batch
from tests.unit.test_schedule import at, run_table

SCHEMAS = Path(__file__).resolve().parents[2] / "cli" / "schemas"
NOW = at("2026-01-05T10:00:00.300").timestamp()


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


@pytest.mark.parametrize("expression", ["0 2 * * *", "*/15 * * * *", "30 6 1 * mon", "0 0 29 2 *"])
def test_cron_next_runs_are_celerys_fire_times(expression: str) -> None:
    """Cron: the next three times Celery's crontab fires, strictly after now."""
    cron, now, fires = crontab.from_string(expression), at("2026-01-05T10:00:00.300"), []
    for _ in range(3):
        cron.nowfun = lambda now=now: now
        now += cron.remaining_estimate(now)
        fires.append(now)
    run = ScheduledRun("r", Path("p"), cron=expression)
    assert next_runs(run, after=at("2026-01-05T10:00:00.300"), count=3) == fires


@pytest.mark.parametrize("every_s", [2, 60, 90, 3600, 7200, 86400])
def test_interval_next_runs_follow_celerys_relative_schedule(every_s: int) -> None:
    """every_s: each fire is the last plus the period, rounded down as Celery's relative
    schedule rounds it (so every_s = 90 fires each minute), anchored at beat's due time."""
    every = schedule(timedelta(seconds=every_s), relative=True)
    first = at("2026-01-05T10:00:07")
    fires, last = [first], first
    for _ in range(2):
        every.nowfun = lambda last=last: last
        last += every.remaining_estimate(last)
        fires.append(last)
    run = ScheduledRun("r", Path("p"), every_s=every_s)
    found = next_runs(run, after=at("2026-01-05T10:00:00"), count=3, first=first)
    assert found == fires


def test_interval_next_runs_without_beat_start_a_period_from_now() -> None:
    """Without beat's due time: a period from now, rounded; a naive time is refused."""
    run = ScheduledRun("r", Path("p"), every_s=3600)
    assert next_runs(run, after=at("2026-01-05T10:20:00"), count=2) == [
        at("2026-01-05T11:00"),
        at("2026-01-05T12:00"),
    ]
    with pytest.raises(ValueError, match="timezone-aware"):
        next_runs(run, after=datetime(2026, 1, 5), count=1)


def test_fingerprints_follow_the_definitions_not_the_layout() -> None:
    """The same runs at another directory (or with comments) match; a changed cron does not."""
    here = read_runs(run_table(name="a", file="rows.jsonl", cron="0 2 * * *"), base_dir=Path("/x"))
    there = read_runs(
        "# moved\n" + run_table(name="a", file="rows.jsonl", cron="0  2 * * *"),
        base_dir=Path("/srv/imageq"),
    )
    other = read_runs(run_table(name="a", file="rows.jsonl", cron="0 3 * * *"), base_dir=Path("/x"))
    assert schedule_fingerprint(here[0], Path("/x")) == schedule_fingerprint(
        there[0], Path("/srv/imageq")
    )
    assert run_fingerprint(here[0][0], Path("/x")) != run_fingerprint(other[0][0], Path("/x"))
    assert len(run_fingerprint(here[0][0], Path("/x"))) == 12


def test_read_runs_reports_every_fault_with_run_and_field() -> None:
    """Every faulty run is named, with its field; the valid ones are kept."""
    text = (
        run_table(name="ok", file="a.jsonl", every_s=60)
        + run_table(name="bad name", file="a.jsonl", every_s=60)
        + run_table(name="c", file="a.jsonl", cron="61 * * * *")
        + run_table(name="ok", file="b.jsonl", every_s=5)
    )
    runs, faults = read_runs(text, base_dir=Path(), source="s.toml")
    assert [run.name for run in runs] == ["ok"]
    assert [(f.run, f.name, f.field) for f in faults] == [
        (2, "bad name", "name"),
        (3, "c", "cron"),
        (4, "ok", "name"),
    ]
    assert faults[1].message.startswith("s.toml: run 3 (c): cron: '61 * * * *' is not valid")


def test_check_view_matches_its_schema_and_text(tmp_path: Path) -> None:
    """`schedules check`: faults and next runs, valid against its schema; the text says it."""
    (tmp_path / "a.jsonl").write_text("")
    text = run_table(name="a", file="a.jsonl", every_s=3600) + run_table(name="b", file="z.csv")
    runs, faults = read_runs(text, base_dir=tmp_path, source="s.toml")
    view = check_view(tmp_path / "s.toml", runs, faults, now=NOW, file_found=Path.is_file)
    jsonschema.validate(view, schema("schedules-check.json"))
    assert view["valid"] is False
    assert view["errors"][0]["field"] == "cron, every_s"
    assert view["runs"][0]["next_runs"] == [
        "2026-01-05T11:00:00.000Z",
        "2026-01-05T12:00:00.000Z",
        "2026-01-05T13:00:00.000Z",
    ]
    assert view["runs"][0]["file_found"] is True
    shown = _text(check_text(view))
    assert "invalid, 1 error(s)" in shown
    assert "run 2 (b): cron, every_s: give exactly one of them" in shown


def _text(renderable: object) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# What a worker holds and whether it can run a tick.


def test_hold_schedule_names_each_problem(tmp_path: Path) -> None:
    """Unset, missing and invalid schedule files are problems with their reason."""
    (tmp_path / "bad.toml").write_text("[[run]]\nname = 'x'\n")
    problems = [
        hold_schedule(ScheduleSettings(file=file)).problem
        for file in (None, str(tmp_path / "no.toml"), str(tmp_path / "bad.toml"))
    ]
    assert [problem and problem.reason for problem in problems] == [
        TickFailure.NO_SCHEDULE_FILE,
        TickFailure.FILE_UNREADABLE,
        TickFailure.FILE_INVALID,
    ]
    assert "run 1 (x): file: required" in str(problems[2])


@pytest.fixture
def held_file(tmp_path: Path) -> Path:
    path = tmp_path / "schedule.toml"
    path.write_text(run_table(name="fast", file="rows.jsonl", every_s=2))
    return path


def published_for(path: Path, *, now: float = NOW, next_run_at: float | None = None) -> Any:
    runs, _ = read_runs(path.read_text(), base_dir=path.parent)
    published = published_schedule(
        str(path), runs, due_at={"fast": next_run_at}, host="beat@h", now=now,
        loop_interval_s=5, lock_timeout_s=30,
    )  # fmt: skip
    return json.loads(json.dumps(published))


def test_runnable_refuses_unknown_and_differing_runs(held_file: Path, tmp_path: Path) -> None:
    """Unknown run: unknown_run; defined otherwise than the scheduler's: run_differs; the same
    run (or no published schedule): the worker's run."""
    held = hold_schedule(ScheduleSettings(file=str(held_file)))
    assert runnable(held, "fast", None).every_s == 2
    assert runnable(held, "fast", published_for(held_file)).name == "fast"
    with pytest.raises(TickFailed) as unknown:
        runnable(held, "nightly", published_for(held_file))
    assert unknown.value.reason == TickFailure.UNKNOWN_RUN
    other = tmp_path / "other" / "schedule.toml"
    other.parent.mkdir()
    other.write_text(run_table(name="fast", file="rows.jsonl", every_s=3))
    with pytest.raises(TickFailed) as differs:
        runnable(held, "fast", published_for(other))
    assert differs.value.reason == TickFailure.RUN_DIFFERS
    assert "defines run 'fast' otherwise than the scheduler's" in differs.value.message


def test_published_schedule_keeps_no_webhook_url() -> None:
    """A webhook URL may carry a token: published as a yes/no, inside the fingerprint."""
    run = ScheduledRun("a", Path("/s/rows.jsonl"), every_s=60, webhook="https://h/x?token=t0p")
    published = published_schedule(
        "/s/schedule.toml", [run], due_at={}, host="h", now=NOW, loop_interval_s=5,
        lock_timeout_s=30,
    )  # fmt: skip
    assert "t0p" not in json.dumps(published)
    assert published["runs"] == [
        {
            "name": "a", "file": "rows.jsonl", "cron": None, "every_s": 60, "webhook": True,
            "fingerprint": run_fingerprint(run, Path("/s")), "next_run_at": None,
        }
    ]  # fmt: skip


# `imageq schedules` and the health verdict.

FAILED = Tick(
    "fast", NOW - 1, "w1@h", reason="no_schedule_file", message="schedule.file is not set"
)
QUEUED = Tick("fast", NOW - 3, "w2@h", batch_id="fast-20260105T095956Z", slot="x")
BATCH = Batch(
    "fast-20260105T095956Z", total=3, completed_at=NOW - 2, counts={"succeeded": 2, "failed": 1}
)


def test_schedules_view_shows_next_and_last_runs(held_file: Path) -> None:
    """Each published run with its next runs from beat's due time, its last runs newest first
    (a failed tick with its reason, a queued one with its batch), and each worker's file."""
    published = published_for(held_file, next_run_at=NOW + 1.2)
    view = schedules_view(
        published,
        {"fast": [FAILED, QUEUED], "old": [QUEUED]},
        {BATCH.batch_id: BATCH},
        {
            "w1@h": {"file": None, "fingerprint": None, "error": "not set", "at": NOW},
            "w2@h": {"file": str(held_file), "fingerprint": published["fingerprint"], "at": NOW},
        },
        now=NOW,
    )
    jsonschema.validate(view, schema("schedules.json"))
    fast, old = view["schedules"]
    assert fast["next_runs"] == [
        "2026-01-05T10:00:01.500Z",
        "2026-01-05T10:00:03.000Z",
        "2026-01-05T10:00:05.000Z",
    ]
    assert [(r["outcome"], r["reason"], r["batch_id"]) for r in fast["last_runs"]] == [
        ("failed", "no_schedule_file", None),
        ("complete", None, "fast-20260105T095956Z"),
    ]
    assert fast["last_runs"][1]["batch"]["counts"]["failed"] == 1
    assert (old["in_schedule"], old["next_runs"]) == (False, [])
    assert [w["matches"] for w in view["workers"]] == [False, True]
    assert view["scheduler"]["running"] is True
    text = _text(schedules_text(view))
    assert "FAILED (no_schedule_file): schedule.file is not set" in text
    assert "batch fast-20260105T095956Z  complete 3/3 (2 succeeded, 1 failed)" in text
    assert "w1@h: no usable schedule file: not set" in text


def test_schedules_view_without_a_scheduler() -> None:
    """Nothing published: no scheduler, and runs known only from their ticks."""
    view = schedules_view(None, {"fast": [FAILED]}, {}, {}, now=NOW)
    jsonschema.validate(view, schema("schedules.json"))
    assert view["scheduler"] is None
    assert view["schedules"][0]["last_runs"][0]["outcome"] == "failed"
    assert "no scheduler has published a schedule" in _text(schedules_text(view))


def test_verdict_passes_when_all_is_well(held_file: Path) -> None:
    """No scheduler, or runs whose last tick queued and live workers holding the file: ok."""
    assert schedule_verdict(None, {}, {}, None, now=NOW) == (
        True,
        "no scheduler has published a schedule",
    )
    published = published_for(held_file)
    report = {"file": "f", "fingerprint": published["fingerprint"], "at": NOW}
    ok, detail = schedule_verdict(published, {"fast": QUEUED}, {"w2@h": report}, ["w2@h"], now=NOW)
    assert ok, detail
    assert detail == f"1 run(s) from {held_file} (fingerprint {published['fingerprint']})" + (
        "; 1 live worker(s) hold it"
    )


def test_verdict_fails_naming_the_run_or_worker(held_file: Path) -> None:
    """A failed last tick names the run and the reason; a live worker without the file, or
    with another, is named; a scheduler silent for too long is said to be down."""
    published = published_for(held_file)
    ok, detail = schedule_verdict(published, {"fast": FAILED}, {}, None, now=NOW)
    assert not ok
    assert "run fast: last tick failed at 2026-01-05T09:59:59.300Z on w1@h" in detail
    assert "(no_schedule_file): schedule.file is not set" in detail
    reports: dict[str, dict[str, Any]] = {
        "w1@h": {"file": None, "fingerprint": None, "error": "not set", "at": NOW},
        "w3@h": {"file": "/o.toml", "fingerprint": "0123456789ab", "at": NOW},
    }
    ok, detail = schedule_verdict(
        published, {"fast": QUEUED}, reports, ["w1@h", "w3@h", "w4@h"], now=NOW
    )
    assert not ok
    assert "worker w1@h cannot run scheduled runs: not set" in detail
    assert "worker w3@h holds /o.toml (fingerprint 0123456789ab)" in detail
    assert "worker w4@h has not reported its schedule file" in detail
    ok, detail = schedule_verdict(published, {"fast": QUEUED}, {}, None, now=NOW + 3600)
    assert not ok
    assert "last published its schedule 3600 s ago" in detail
