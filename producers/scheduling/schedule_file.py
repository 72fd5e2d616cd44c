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

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from celery.schedules import crontab
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
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScheduleError(f"{source}: not valid TOML: {error}") from None
    if unknown := sorted(set(document) - {"run"}):
        raise ScheduleError(f"{source}: unknown key(s) {', '.join(unknown)}; only [[run]] tables")
    tables = document.get("run", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ScheduleError(f"{source}: run: must be [[run]] tables")
    runs: list[ScheduledRun] = []
    for index, table in enumerate(tables, start=1):
        label = f"{source}: run {index}" + (
            f" ({table['name']})" if isinstance(table.get("name"), str) else ""
        )
        try:
            run = _parse_run(table, base_dir)
        except ValueError as error:
            raise ScheduleError(f"{label}: {error}") from None
        if any(other.name == run.name for other in runs):
            raise ScheduleError(f"{label}: name: {run.name!r} is already used by another run")
        runs.append(run)
    return runs


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
