"""`imageq schedules`: the scheduled runs the scheduler runs, their next and last runs; and
`imageq schedules check FILE`, which validates a schedule file.

The list is read from what the scheduler (beat) published and the workers recorded in Redis,
so it is the truth whatever this shell's `IMAGEQ_SCHEDULE__FILE`. Register with
`app.add_typer(schedules, name="schedules")`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.text import Text

from imageq.cli.exits import Exit
from imageq.cli.views import fail, out
from imageq.config import get_settings
from imageq.ops.terminal_text import shown
from imageq.producers.api import ImageQueue
from imageq.producers.scheduling.schedule_file import RunFault, read_runs
from imageq.producers.scheduling.schedule_records import ScheduleRecords, Tick
from imageq.producers.scheduling.schedule_view import check_view, schedules_view
from imageq.worker.domain.batch import Batch
from imageq.worker.errors import JobNotFound

schedules = typer.Typer(
    help="Scheduled runs: what the scheduler runs, next and last runs; check a schedule file.",
    invoke_without_command=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")]


@schedules.callback()
def list_schedules(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List scheduled runs: next runs, last runs and their outcomes.

    As the scheduler published them and the workers recorded them in Redis: each run's next
    fire times, and its last runs with their batch and outcome, or why the tick failed.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = get_settings()
    records = ScheduleRecords.connect(settings)
    published = records.published_schedule()
    names = {run["name"] for run in (published or {}).get("runs", [])}
    names |= set(records.ticked_runs())
    ticks = {name: records.ticks(name) for name in sorted(names)}
    view = schedules_view(
        published,
        ticks,
        _batches(ImageQueue(settings), ticks),
        records.worker_reports(),
        now=time.time(),
    )
    if as_json:
        typer.echo(json.dumps(view))
    else:
        out.print(schedules_text(view))


@schedules.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The schedule file (TOML) to check.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a schedule file and show each run's next runs.

    Every run is checked; each fault names its run and field. Exit 2 if the file is invalid.
    """
    try:
        data = file.read_bytes()
    except OSError as error:
        raise fail(f"{file}: {error.strerror or error}", Exit.NOT_FOUND) from None
    try:
        runs, faults = read_runs(data.decode("utf-8-sig"), base_dir=file.parent, source=str(file))
    except UnicodeDecodeError as error:
        runs, faults = [], [RunFault(None, None, None, f"{file}: not UTF-8 (byte {error.start})")]
    view = check_view(file, runs, faults, now=time.time(), file_found=Path.is_file)
    if as_json:
        typer.echo(json.dumps(view))
    else:
        out.print(check_text(view))
    if faults:
        raise typer.Exit(Exit.INVALID)


def _batches(queue: ImageQueue, ticks: Mapping[str, Sequence[Tick]]) -> dict[str, Batch | None]:
    found: dict[str, Batch | None] = {}
    for tick in (tick for run_ticks in ticks.values() for tick in run_ticks):
        if tick.batch_id and not tick.failed and tick.batch_id not in found:
            try:
                found[tick.batch_id] = queue.batch(tick.batch_id)
            except JobNotFound:
                found[tick.batch_id] = None
    return found


def schedules_text(view: Mapping[str, Any]) -> Group:
    """The `imageq schedules` object for people: the scheduler, each run, the workers."""
    parts: list[Any] = [_scheduler_line(view["scheduler"])]
    for run in view["schedules"]:
        next_runs = ", ".join(run["next_runs"]) or "-"
        parts += [Text(), _run_title(run), shown(f"  next runs: {next_runs}")]
        parts.append(shown("  last runs:" if run["last_runs"] else "  last runs: none recorded"))
        for last in run["last_runs"]:
            line = shown(f"    {last['at']}  {last['worker']}  batch {last['batch_id'] or '-'}  ")
            line.append_text(_outcome_text(last))
            parts.append(line)
    if view["workers"]:
        parts += [Text(), Text("workers (the last report of each)", style="bold")]
    for worker in view["workers"]:
        held = (
            f"{worker['file']} (fingerprint {worker['fingerprint']})"
            if worker["fingerprint"]
            else f"no usable schedule file: {worker['error']}"
        )
        line = shown(f"  {worker['worker']}: {held}, reported {worker['reported_at']}")
        if worker["matches"] is False:
            line.append_text(shown("  NOT the scheduler's", style="red"))
        parts.append(line)
    return Group(*parts)


def _scheduler_line(scheduler: Mapping[str, Any] | None) -> Text:
    if scheduler is None:
        return shown("no scheduler has published a schedule (is `imageq scheduler` running?)")
    state = "running" if scheduler["running"] else "NOT RUNNING: no beat has published lately"
    line = Text("scheduler ", style="bold")
    line.append_text(
        shown(
            f"{scheduler['host']}: {scheduler['file'] or 'no schedule file'}"
            f" (fingerprint {scheduler['fingerprint'] or '-'}), published"
            f" {scheduler['published_at']}, "
        )
    )
    line.append_text(shown(state, style="green" if scheduler["running"] else "red"))
    return line


def _run_title(run: Mapping[str, Any]) -> Text:
    title = shown(run["name"], style="bold")
    if not run["in_schedule"]:
        title.append_text(shown("  not in the scheduler's schedule", style="yellow"))
        return title
    when = f"cron {run['cron']}" if run["cron"] else f"every {run['every_s']} s"
    webhook = ", webhook" if run["webhook"] else ""
    title.append_text(shown(f"  {when}, bulk file {run['file']}{webhook}"))
    return title


def _outcome_text(last: Mapping[str, Any]) -> Text:
    if last["outcome"] == "failed":
        return shown(f"FAILED ({last['reason']}): {last['message']}", style="red")
    if last["outcome"] == "gone":
        return shown("queued; the batch record has expired")
    batch = last["batch"]
    ended = ", ".join(f"{count} {name}" for name, count in batch["counts"].items() if count)
    style = "green" if last["outcome"] == "complete" else ""
    spent = f", {batch['credits_used']:g} credits"
    text = f"{last['outcome']} {batch['finished']}/{batch['total']} ({ended}){spent}"
    return shown(text, style=style)


def check_text(view: Mapping[str, Any]) -> Group:
    """The `imageq schedules check` object for people."""
    runs = view["runs"]
    if view["valid"]:
        verdict = shown(f"{view['file']}: valid, {len(runs)} run(s)", style="green")
    else:
        verdict = shown(f"{view['file']}: invalid, {len(view['errors'])} error(s)", style="red")
    parts: list[Any] = [verdict]
    parts += [shown(f"  {error['message']}", style="red") for error in view["errors"]]
    for run in runs:
        when = f"cron {run['cron']}" if run["cron"] else f"every {run['every_s']} s"
        title = shown(run["name"], style="bold")
        title.append_text(shown(f"  {when}, bulk file {run['file']}"))
        if not run["file_found"]:
            title.append_text(shown(" (not found on this machine)", style="yellow"))
        parts += [Text(), title, shown(f"  next runs: {', '.join(run['next_runs'])}")]
    return Group(*parts)
