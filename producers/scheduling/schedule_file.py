"""Scheduled bulk runs: the schedule file, and the slot (so the batch id) each tick belongs to.

All pure but `load_schedule`. A schedule file is TOML, one `[[run]]` table per run:

    [[run]]
    name = "nightly"            # names its batches: nightly-20260105T0200Z
    file = "prompts.jsonl"      # a bulk file (JSONL or CSV), relative to the schedule file
    cron = "0 2 * * *"          # UTC; or every_s = 3600
    webhook = "https://example.com/hooks/nightly"   # optional: the batch's webhook

A tick's batch id comes from its slot, the scheduled fire time it belongs to, not from the
moment it runs: a duplicated or late tick gets the same batch id, and so (jobs being
`{batch_id}-{line}`) the same job ids, and submits nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from celery.schedules import crontab
from celery.utils.time import delta_resolution
from croniter import croniter

from imageq.producers.jobs import JOB_ID
from imageq.worker.errors import ImageqError

RUN_FIELDS: Final = ("name", "file", "cron", "every_s", "webhook")
# Batch ids add a slot stamp (up to 17 characters) and job ids a line (7 or more) to the name,
# and a job id has at most 128 characters.
MAX_NAME_LENGTH: Final = 64


class ScheduleError(ImageqError):
    """The schedule file cannot be used; the message names the file, the run and the field."""


@dataclass(frozen=True)
class ScheduledRun:
    """One `[[run]]`: bulk `file` run as a batch on `cron` (UTC) or every `every_s` seconds."""

    name: str
    file: Path
    cron: str | None = None
    every_s: int | None = None
    webhook: str | None = None


def load_schedule(path: Path) -> list[ScheduledRun]:
    """The runs of a schedule file, relative bulk-file paths taken from its directory.
    Raises `ScheduleError` if it is invalid, `OSError` (`FileNotFoundError`) if unreadable."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ScheduleError(f"{path}: not UTF-8 (byte offset {error.start})") from None
    return parse_schedule(text, base_dir=path.parent, source=str(path))


def parse_schedule(text: str, *, base_dir: Path, source: str = "schedule") -> list[ScheduledRun]:
    """The runs of a schedule file's text, in file order; an empty file has none. Raises
    `ScheduleError` at the first fault, naming `source`, the run and the field."""
    runs, faults = read_runs(text, base_dir=base_dir, source=source)
    if faults:
        raise ScheduleError(faults[0].message)
    return runs


@dataclass(frozen=True)
class RunFault:
    """One fault of a schedule file: in run number `run` (1-based; None for the file as a
    whole), of its `field` when one is to blame; `message` names the source, run and field."""

    run: int | None
    name: str | None
    field: str | None
    message: str


def read_runs(
    text: str, *, base_dir: Path, source: str = "schedule"
) -> tuple[list[ScheduledRun], list[RunFault]]:
    """Every valid run and every fault of a schedule file's text, each in file order: what
    `imageq schedules check` shows. The file is valid when there is no fault."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return [], [RunFault(None, None, None, f"{source}: not valid TOML: {error}")]
    faults: list[RunFault] = []
    if unknown := sorted(set(document) - {"run"}):
        message = f"{source}: unknown key(s) {', '.join(unknown)}; only [[run]] tables"
        faults.append(RunFault(None, None, None, message))
    tables = document.get("run", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        return [], [*faults, RunFault(None, None, "run", f"{source}: run: must be [[run]] tables")]
    runs: list[ScheduledRun] = []
    for index, table in enumerate(tables, start=1):
        name = table["name"] if isinstance(table.get("name"), str) else None
        label = f"{source}: run {index}" + (f" ({name})" if name is not None else "")
        try:
            run = _parse_run(table, base_dir)
        except ValueError as error:
            field = str(error).split(":", 1)[0]
            faults.append(RunFault(index, name, field, f"{label}: {error}"))
            continue
        if any(other.name == run.name for other in runs):
            message = f"{label}: name: {run.name!r} is already used by another run"
            faults.append(RunFault(index, name, "name", message))
            continue
        runs.append(run)
    return runs, faults


def _parse_run(table: Mapping[str, Any], base_dir: Path) -> ScheduledRun:
    """One run table; raises ValueError as "field: what is wrong"."""
    if unknown := [field for field in table if field not in RUN_FIELDS]:
        raise ValueError(f"{', '.join(unknown)}: unknown field; allowed: {', '.join(RUN_FIELDS)}")
    name = table.get("name")
    if not isinstance(name, str) or not JOB_ID.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"name: required, at most {MAX_NAME_LENGTH} characters of A-Z a-z 0-9 _ . : -,"
            " starting with a letter or digit"
        )
    file = table.get("file")
    if not isinstance(file, str) or not file.strip():
        raise ValueError("file: required, the path of a JSONL or CSV bulk file")
    cron, every_s = table.get("cron"), table.get("every_s")
    if (cron is None) == (every_s is None):
        raise ValueError("cron, every_s: give exactly one of them")
    if cron is not None:
        cron = check_cron(cron)
    if every_s is not None and (
        not isinstance(every_s, int) or isinstance(every_s, bool) or every_s < 1
    ):
        raise ValueError("every_s: must be a whole number of seconds, at least 1")
    webhook = table.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.strip()):
        raise ValueError("webhook: must be a URL")
    return ScheduledRun(name, base_dir / file, cron=cron, every_s=every_s, webhook=webhook)


def check_cron(expression: object) -> str:
    """A 5-field cron expression, normalised to single spaces; raises ValueError if Celery's
    crontab (which fires the ticks) or croniter (which names their slots) refuses it."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise ValueError("cron: must be 5 fields: minute hour day-of-month month day-of-week")
    normal = " ".join(expression.split())
    try:
        crontab.from_string(normal)
        valid = croniter.is_valid(normal)
    except (ValueError, KeyError) as error:
        raise ValueError(f"cron: {normal!r} is not valid ({error})") from None
    if not valid:
        raise ValueError(f"cron: {normal!r} is not valid")
    return normal


def slot_of(run: ScheduledRun, now: datetime) -> datetime:
    """The scheduled fire time (UTC) that a tick at `now` (timezone-aware) belongs to: for
    `cron` the latest fire time at or before `now`; for `every_s` the start of the
    `every_s`-long period (counted from the Unix epoch) that holds `now`."""
    if now.tzinfo is None:
        raise ValueError("slot_of needs a timezone-aware time")
    now = now.astimezone(UTC)
    if run.every_s is not None:
        seconds = int(now.timestamp()) // run.every_s * run.every_s
        return datetime.fromtimestamp(seconds, UTC)
    assert run.cron is not None
    # Fire times fall on whole minutes, and get_prev looks strictly before its start: starting
    # one minute past the current one finds a fire time at this very minute too.
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    # day_or=False: a restricted day of month and day of week must both match, as in Celery's
    # crontab, so a slot is always a time the beat fires at.
    slot: datetime = croniter(run.cron, start, ret_type=datetime, day_or=False).get_prev()
    return slot.astimezone(UTC)


def batch_id_for(run: ScheduledRun, slot: datetime) -> str:
    """The batch id of a run's slot: `{name}-{YYYYmmddTHHMM}Z`, with seconds when the run's
    period is not a whole number of minutes (so two slots never share an id)."""
    to_seconds = run.every_s is not None and run.every_s % 60 != 0
    stamp = slot.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ" if to_seconds else "%Y%m%dT%H%MZ")
    return f"{run.name}-{stamp}"


def next_runs(
    run: ScheduledRun, *, after: datetime, count: int, first: datetime | None = None
) -> list[datetime]:
    """The next `count` times (UTC) beat fires `run`, after `after` (timezone-aware). For an
    `every_s` run, `first` is beat's own next due time when known, and the rest follow from it.

    Cron fire times are Celery's (day of month AND day of week). An `every_s` run is a
    relative Celery schedule: each fire comes `every_s` after the last one, rounded down to
    the period's own resolution (day, hour, minute or second), as beat rounds it."""
    if after.tzinfo is None:
        raise ValueError("next_runs needs a timezone-aware time")
    after = after.astimezone(UTC)
    if run.cron is not None:
        times = croniter(run.cron, after, ret_type=datetime, day_or=False)
        return [times.get_next().astimezone(UTC) for _ in range(count)]
    assert run.every_s is not None
    every = timedelta(seconds=run.every_s)
    fires: list[datetime] = []
    fire = first.astimezone(UTC) if first is not None else _after_period(after, every)
    while len(fires) < count:
        if fire > after:
            fires.append(fire)
        fire = _after_period(fire, every)
    return fires


def _after_period(last: datetime, every: timedelta) -> datetime:
    moment: datetime = delta_resolution(last + every, every)
    return moment.replace(microsecond=0)


def run_definition(run: ScheduledRun, base_dir: Path) -> dict[str, Any]:
    """A run as written in its file (the bulk file relative to the schedule's directory when
    it lies there), so two processes holding the same file at different paths agree."""
    try:
        file = str(run.file.relative_to(base_dir))
    except ValueError:
        file = str(run.file)
    return {
        "name": run.name,
        "file": file,
        "cron": run.cron,
        "every_s": run.every_s,
        "webhook": run.webhook,
    }


def run_fingerprint(run: ScheduledRun, base_dir: Path) -> str:
    """12 hex digits naming a run's definition: equal runs, equal fingerprints."""
    return _digest(run_definition(run, base_dir))


def schedule_fingerprint(runs: Sequence[ScheduledRun], base_dir: Path) -> str:
    """12 hex digits naming a schedule's runs, in file order; comments and layout do not count."""
    return _digest([run_definition(run, base_dir) for run in runs])


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
