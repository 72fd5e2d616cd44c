"""The `imageq` commands: submit, bulk, status, watch, cancel, webhooks, sizing, worker, demo.

Every command takes `--json` (the contract: cli/contract.py and docs/cli.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from importlib import metadata
from typing import Annotated, Any, Final

import typer
from rich.live import Live

from imageq.cli.bulk_run import bulk
from imageq.cli.checks import health_command
from imageq.cli.contract import (
    JSON_HELP,
    UNAVAILABLE_ERRORS,
    ContractGroup,
    unavailable_message,
)
from imageq.cli.dead_letters import webhooks
from imageq.cli.exits import Exit, exit_for
from imageq.cli.exporter import metrics_exporter
from imageq.cli.finding import batches, jobs
from imageq.cli.operate import report, top
from imageq.cli.processes import PASS_THROUGH, demo, scheduler, worker
from imageq.cli.schedules import schedules
from imageq.cli.sizing import sizing
from imageq.cli.views import (
    batch_json,
    batch_table,
    err,
    fail,
    is_finished,
    job_json,
    job_table,
    out,
)
from imageq.config import get_settings
from imageq.ops.terminal_text import shown
from imageq.producers.api import ImageQueue
from imageq.worker.domain.job import Job
from imageq.worker.domain.params import DEFAULT_QUALITY, QUALITIES
from imageq.worker.domain.sizes import ASPECT_RATIOS, RESOLUTIONS, ratios_at
from imageq.worker.errors import (
    ImageqError,
    InvalidParams,
    InvalidSettings,
    JobNotFound,
    WaitTimeout,
)
from imageq.worker.logs import configure_cli_logging

app = typer.Typer(
    cls=ContractGroup,
    help="imageq: image generation jobs on Celery and Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

RATIO_HELP: Final = f"One of {', '.join(ASPECT_RATIOS)}; at 4K only {', '.join(ratios_at('4K'))}."
RESOLUTION_HELP: Final = f"One of {', '.join(RESOLUTIONS)}."
QUALITY_HELP: Final = f"One of {', '.join(QUALITIES)}."


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"imageq {metadata.version('imageq')}")
        raise typer.Exit(Exit.OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """imageq: image generation jobs on Celery and Redis."""


def queue() -> ImageQueue:
    return ImageQueue(get_settings())


def pairs(values: list[str] | None, *, option: str, as_json: bool) -> dict[str, Any]:
    """KEY=VALUE options as a dict; with `as_json`, each VALUE must be JSON (a string quoted)."""
    result: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"{option} takes KEY=VALUE, got {item!r}", Exit.INVALID)
        try:
            result[key] = _json(value) if as_json else value
        except (ValueError, RecursionError):
            hint = f"""quote text as JSON: {option} {key}='"text"'"""
            raise fail(f"{option} {key}: {value!r} is not JSON ({hint})", Exit.INVALID) from None
    return result


def _json(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse, parse_float=_finite)


def _refuse(name: str) -> Any:
    # Python's json takes NaN and Infinity (and reads 1e400 as infinity); no other JSON reader,
    # the API included, does.
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    return value if math.isfinite(value := float(text)) else _refuse(text)


@app.command()
def submit(
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="What to draw.")],
    aspect_ratio: Annotated[
        str, typer.Option("--aspect-ratio", "-r", metavar="RATIO", help=RATIO_HELP)
    ],
    resolution: Annotated[
        str, typer.Option("--resolution", "-s", metavar="RES", help=RESOLUTION_HELP)
    ],
    quality: Annotated[
        str, typer.Option("--quality", "-q", metavar="QUALITY", help=QUALITY_HELP)
    ] = DEFAULT_QUALITY,
    image: Annotated[
        list[str] | None,
        typer.Option("--image", "-i", metavar="URL", help="A reference image (repeatable)."),
    ] = None,
    webhook: Annotated[
        str | None, typer.Option(metavar="URL", help="Signed webhook URL, called at the end.")
    ] = None,
    job_id: Annotated[
        str | None,
        typer.Option("--job-id", metavar="ID", help="Your own id (also the API's out_task_id)."),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--metadata",
            "-m",
            metavar="KEY=VALUE",
            help="Text kept with the job and returned in its result (repeatable).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=JSON", help="Extra API parameter (repeatable)."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end.")] = False,
    timeout: Annotated[float, typer.Option(min=0, help="With --wait: seconds to wait.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Queue one job and print its id; with --wait, follow it and print its result.

    A --job-id already known for the same job is not queued again (it says "already known");
    for a different one it is refused (exit 2).
    """
    extra_params = pairs(param, option="--param", as_json=True)
    tags = pairs(metadata, option="--metadata", as_json=False)
    images = queue()
    try:
        enqueued = images.enqueue_job(
            prompt,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            quality=quality,
            reference_images=image or [],
            extra_params=extra_params,
            job_id=job_id,
            webhook_url=webhook,
            metadata=tags,
        )
    except InvalidParams as error:  # a JobConflict too: the id names another job
        raise fail(str(error), Exit.INVALID) from None
    new_id = enqueued.job_id
    if enqueued.already_known and not as_json:  # the object says it: "already_known"
        err.print(shown(f"{new_id} already known: the same job, not queued again"))
    if not wait:
        result = {"job_id": new_id, "already_known": enqueued.already_known}
        typer.echo(json.dumps(result) if as_json else new_id)
        return
    if not as_json:
        err.print(shown(f"{'watching' if enqueued.already_known else 'queued'} {new_id}; waiting…"))
    try:
        job = images.wait(new_id, timeout_s=timeout)
    except WaitTimeout as error:
        raise fail(str(error), Exit.WAIT_TIMEOUT) from None
    _show(job, as_json=as_json)
    raise typer.Exit(exit_for([job.status]))


@app.command()
def status(
    id_: Annotated[str, typer.Argument(metavar="JOB_ID|BATCH_ID", help="What to show.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show a job or a batch as it stands."""
    images = queue()
    try:
        _show(images.get(id_), as_json=as_json)
        return
    except JobNotFound:
        pass
    try:
        batch = images.batch(id_)
    except JobNotFound:
        raise fail(f"no job or batch {id_!r}", Exit.NOT_FOUND) from None
    if as_json:
        typer.echo(json.dumps(batch_json(batch, images.batch_jobs(id_))))
    else:
        out.print(batch_table(batch))


@app.command()
def watch(
    id_: Annotated[str, typer.Argument(metavar="JOB_ID|BATCH_ID", help="What to follow.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON object per line, at each change.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds between refreshes.")
    ] = 0.5,
    timeout: Annotated[float, typer.Option(min=0, help="Give up after this many seconds.")] = 3600,
) -> None:
    """Follow a job or a batch until it ends, refreshing in place."""
    images = queue()
    read = _reader(images, id_, as_json=as_json)
    give_up = time.monotonic() + timeout
    last = ""
    with Live(console=out, auto_refresh=False, transient=as_json) as live:
        while True:
            view, done, code = read()
            if as_json:
                line = json.dumps(view)
                if line != last:
                    typer.echo(line)
                    last = line
            else:
                live.update(view, refresh=True)
            if done:
                raise typer.Exit(code)
            if time.monotonic() > give_up:
                raise fail(f"{id_} has not ended after {timeout:g} s", Exit.WAIT_TIMEOUT)
            time.sleep(interval)


@app.command()
def cancel(
    id_: Annotated[str, typer.Argument(metavar="JOB_ID|BATCH_ID", help="What to stop.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Stop unfinished jobs: no more polling; status cancelled; notified once.

    Exit 1 when nothing was left to cancel.
    """
    images = queue()
    kind = "job"
    try:
        cancelled = int(images.cancel(id_))
    except JobNotFound:
        kind = "batch"
        try:
            cancelled = images.cancel_batch(id_)
        except JobNotFound:
            raise fail(f"no job or batch {id_!r}", Exit.NOT_FOUND) from None
    if as_json:
        typer.echo(json.dumps({"id": id_, "kind": kind, "cancelled": cancelled}))
    else:
        typer.echo(f"cancelled {cancelled} job(s)")
    raise typer.Exit(Exit.OK if cancelled else Exit.NOT_ALL_SUCCEEDED)


# Registered here, after submit, status, watch and cancel (defined above), so that
# `imageq --help` lists them in the order of use: a job's commands, many jobs', watching the
# cluster, running its processes; then the groups (Typer lists those last).
app.command()(bulk)
app.command()(jobs)
app.command()(top)
app.command()(report)
app.command("health")(health_command)
app.command()(sizing)
app.command(context_settings=PASS_THROUGH)(worker)
app.command(context_settings=PASS_THROUGH)(scheduler)
app.command("metrics-exporter")(metrics_exporter)
app.command()(demo)
app.add_typer(batches, name="batches")
app.add_typer(webhooks, name="webhooks")
app.add_typer(schedules, name="schedules")


def _show(job: Job, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(job_json(job)))
    else:
        out.print(job_table(job))


def _reader(images: ImageQueue, id_: str, *, as_json: bool) -> Any:
    """A function giving (view, ended, exit code) for a job or a batch, whichever `id_` is."""
    try:
        images.get(id_)
    except JobNotFound:
        try:
            images.batch(id_)
        except JobNotFound:
            raise fail(f"no job or batch {id_!r}", Exit.NOT_FOUND) from None

        def read_batch() -> tuple[Any, bool, Exit]:
            batch = images.batch(id_)
            jobs = images.batch_jobs(id_)
            code = exit_for([job.status for job in jobs.values()])
            view = batch_json(batch, jobs) if as_json else batch_table(batch)
            return view, batch.finished >= batch.total, code

        return read_batch

    def read_job() -> tuple[Any, bool, Exit]:
        job = images.get(id_)
        view = job_json(job) if as_json else job_table(job)
        return view, is_finished(job), exit_for([job.status])

    return read_job


def main() -> None:
    """Console entry point (`imageq`)."""
    with contextlib.suppress(InvalidSettings):  # the command that reads it names the setting
        configure_cli_logging(get_settings())
    try:
        app()
    except UNAVAILABLE_ERRORS as error:
        err.print(shown(unavailable_message(error), style="red"))
        sys.exit(Exit.UNAVAILABLE)
    except ImageqError as error:
        err.print(shown(f"{type(error).__name__}: {error}", style="red"))
        sys.exit(Exit.INVALID)
