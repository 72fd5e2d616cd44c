"""The `imageq` commands: submit, bulk, status, watch, cancel, webhooks, worker, demo."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.live import Live

from imageq.cli.bulk_run import bulk
from imageq.cli.checks import health_command
from imageq.cli.dead_letters import webhooks
from imageq.cli.exits import Exit, exit_for
from imageq.cli.operate import report, top
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
from imageq.worker.errors import ImageqError, InvalidParams, JobNotFound, WaitTimeout

app = typer.Typer(
    help="imageq: image generation jobs on Celery and Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(webhooks, name="webhooks")
app.command()(bulk)
app.command()(top)
app.command()(report)
app.command("health")(health_command)


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
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    aspect_ratio: Annotated[str, typer.Option("--aspect-ratio", "-r", help="e.g. 16:9")],
    resolution: Annotated[str, typer.Option("--resolution", "-s", help="1K, 2K or 4K")],
    quality: Annotated[str, typer.Option("--quality", "-q")] = "high",
    image: Annotated[list[str] | None, typer.Option("--image", "-i", help="Reference.")] = None,
    webhook: Annotated[str | None, typer.Option(help="Signed webhook URL.")] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="Your own id.")] = None,
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=JSON.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end.")] = False,
    timeout: Annotated[float, typer.Option(min=0, help="With --wait: seconds to wait.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
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
    if enqueued.already_known:
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
    id_: Annotated[str, typer.Argument(metavar="JOB_ID|BATCH_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
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
    id_: Annotated[str, typer.Argument(metavar="JOB_ID|BATCH_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="A JSON line per change.")] = False,
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
def cancel(id_: Annotated[str, typer.Argument(metavar="JOB_ID|BATCH_ID")]) -> None:
    """Stop unfinished jobs: no more polling; status cancelled; notified once."""
    images = queue()
    try:
        cancelled = int(images.cancel(id_))
    except JobNotFound:
        try:
            cancelled = images.cancel_batch(id_)
        except JobNotFound:
            raise fail(f"no job or batch {id_!r}", Exit.NOT_FOUND) from None
    typer.echo(f"cancelled {cancelled} job(s)")
    raise typer.Exit(Exit.OK if cancelled else Exit.NOT_ALL_SUCCEEDED)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a worker: `celery -A imageq.worker.app worker --without-gossip --without-mingle`.

    Heartbeats stay on: Flower lists workers by them (docs/flower.md has what each costs).
    The pool is IMAGEQ_WORKER__POOL; extra arguments go to Celery (`--without-heartbeat`, ...).
    """
    lean = ["--without-gossip", "--without-mingle"]
    # Named on the command line, so that Celery patches for gevent before anything else loads.
    named = any(arg in ("-P", "--pool") or arg.startswith("--pool=") for arg in ctx.args)
    pool = [] if named else ["--pool", get_settings().worker.pool]
    command = [sys.executable, "-m", "celery", "-A", "imageq.worker.app", "worker", *lean, *pool]
    command += ctx.args
    os.execv(sys.executable, command)  # noqa: S606 -- replacing this process is the point


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def scheduler(ctx: typer.Context) -> None:
    """Run the beat (scheduled runs and the sweeper): `celery -A imageq.worker.app beat`."""
    command = [sys.executable, "-m", "celery", "-A", "imageq.worker.app", "beat", *ctx.args]
    os.execv(sys.executable, command)  # noqa: S606 -- replacing this process is the point


@app.command()
def demo() -> None:
    """Run the demo (the same as `make demo`)."""
    from imageq.devenv.demo import main as run_demo

    raise typer.Exit(run_demo())


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
    try:
        app()
    except ImageqError as error:
        err.print(shown(f"{type(error).__name__}: {error}", style="red"))
        sys.exit(Exit.INVALID)
