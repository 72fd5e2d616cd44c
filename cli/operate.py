"""`imageq top` and `imageq report`: a live view over all jobs, and a batch as an HTML page."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import redis
import typer
from rich.console import Console, RenderableType
from rich.live import Live

from imageq.cli.exits import Exit
from imageq.cli.views import batch_json, fail
from imageq.config import Settings, get_settings
from imageq.ops.batch_report import build_report, write_report
from imageq.ops.top import Snapshot, collect, render, snapshot, snapshot_json
from imageq.producers.api import ImageQueue
from imageq.worker.errors import JobNotFound
from imageq.worker.redis_clients import redis_client
from imageq.worker.store.job_store import JobStore


def top(
    interval: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds between refreshes.")
    ] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    window: Annotated[
        float, typer.Option(min=1, max=366 * 86400, help="Seconds of throughput and lag.")
    ] = 300,
    limit: Annotated[int, typer.Option(min=1, help="Most job records read per frame.")] = 5000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one snapshot as a JSON object and exit.")
    ] = False,
) -> None:
    """Watch every job: in flight, counts per status, failures, throughput and lag."""
    settings = get_settings()
    prefix = settings.redis.key_prefix
    out = Console()
    with _store_client(settings) as client:
        store = JobStore(client, prefix=prefix, ttl_s=settings.redis.record_ttl_s)

        def shoot() -> Snapshot:
            jobs = collect(client, prefix, limit=limit)
            return snapshot(jobs, store.dead_letters(), now=time.time(), window_s=window)

        def frame() -> RenderableType:
            return render(shoot(), limit=limit)

        if as_json:
            typer.echo(json.dumps(snapshot_json(shoot(), limit=limit)))
            return
        if once:
            out.print(frame())
            return
        try:
            with Live(console=out, auto_refresh=False) as live:
                while True:
                    live.update(frame(), refresh=True)
                    time.sleep(interval)
        except KeyboardInterrupt:
            raise typer.Exit(Exit.OK) from None


def report(
    batch_id: Annotated[str, typer.Argument(metavar="BATCH_ID", help="The batch to show.")],
    html: Annotated[Path, typer.Option("--html", help="Where to write the page.")],
    thumbnail_px: Annotated[
        int, typer.Option(min=16, max=4096, help="Longest side of each thumbnail.")
    ] = 256,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print where the page went and what it shows, as JSON.")
    ] = False,
) -> None:
    """Write a batch as one self-contained HTML page: its images, prompts and timing."""
    images = ImageQueue(get_settings())
    try:
        batch = images.batch(batch_id)
    except JobNotFound:
        raise fail(f"no batch {batch_id!r}", Exit.NOT_FOUND) from None
    jobs = images.batch_jobs(batch_id)
    page = build_report(batch, jobs, thumbnail_px=thumbnail_px)
    try:
        path = write_report(html, page)
    except OSError as error:
        raise fail(f"--html: {error}", Exit.INVALID) from None
    if as_json:
        written = {"html": str(path), "bytes": len(page.encode()), "batch": batch_json(batch, jobs)}
        typer.echo(json.dumps(written))
    else:
        typer.echo(str(path))


def _store_client(settings: Settings) -> redis.Redis:
    return redis_client(settings.redis, "store", socket_timeout=10, socket_connect_timeout=5)
