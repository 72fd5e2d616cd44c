"""A `top`-like view over all jobs: what is in flight, counts per status, recent failures,
throughput and lag over the last minutes.

`collect` reads job records from Redis; `snapshot` turns them into numbers (pure, given the
clock); `render` lays those out for the terminal, `snapshot_json` for scripts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final

import redis
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from imageq.ops.palette import STATUS_COLOURS
from imageq.ops.terminal_text import shown
from imageq.worker.domain.job import Job
from imageq.worker.domain.payload import iso_time
from imageq.worker.domain.status import JobStatus
from imageq.worker.policy.adaptive import percentile

RECENT_FAILURES: Final = 10
OLDEST_IN_FLIGHT: Final = 10
_FAILED: Final = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT})
_IN_FLIGHT: Final = frozenset({JobStatus.QUEUED, JobStatus.SUBMITTED})
_SCAN_COUNT: Final = 500


@dataclass(frozen=True)
class Lag:
    """Percentiles (nearest rank) of one delay, in seconds; None when nothing was measured."""

    count: int
    p50_s: float | None
    p99_s: float | None


@dataclass(frozen=True)
class Failure:
    """A job that ended badly, or a webhook given up on, and why."""

    job_id: str
    kind: str
    at: float
    reason: str


@dataclass(frozen=True)
class InFlight:
    """A job not yet finished, and how long it has existed."""

    job_id: str
    status: JobStatus
    age_s: float
    poll_count: int


@dataclass(frozen=True)
class Snapshot:
    """The numbers of one dashboard frame, as of `now` (epoch s)."""

    now: float
    window_s: float
    jobs_seen: int
    counts: dict[JobStatus, int]
    in_flight: int
    oldest_in_flight: list[InFlight]
    recent_failures: list[Failure]
    dead_letters: int
    finished_in_window: int
    throughput_per_min: float
    queue_wait: Lag
    generation: Lag
    webhook_delivery: Lag


def snapshot(
    jobs: Sequence[Job],
    dead_letters: Mapping[str, Mapping[str, Any]],
    *,
    now: float,
    window_s: float = 300,
) -> Snapshot:
    """Counts per status and in flight over every job given; throughput and lags over the
    jobs finished in the last `window_s` seconds; the latest failures whenever they were."""
    counts = {status: 0 for status in JobStatus}
    for job in jobs:
        counts[job.status] += 1
    recent = [
        job
        for job in jobs
        if job.finished_at is not None and now - window_s < job.finished_at <= now
    ]
    waiting = sorted((job for job in jobs if job.status in _IN_FLIGHT), key=lambda j: j.created_at)
    return Snapshot(
        now=now,
        window_s=window_s,
        jobs_seen=len(jobs),
        counts=counts,
        in_flight=sum(counts[status] for status in _IN_FLIGHT),
        oldest_in_flight=[
            InFlight(job.job_id, job.status, now - job.created_at, job.poll_count)
            for job in waiting[:OLDEST_IN_FLIGHT]
        ],
        recent_failures=_failures(jobs, dead_letters)[:RECENT_FAILURES],
        dead_letters=len(dead_letters),
        finished_in_window=len(recent),
        throughput_per_min=len(recent) / (window_s / 60),
        queue_wait=lag([j.submitted_at - j.created_at for j in recent if j.submitted_at]),
        generation=lag(
            [j.finished_at - j.submitted_at for j in recent if j.submitted_at and j.finished_at]
        ),
        webhook_delivery=lag([d for j in recent if (d := _webhook_delay_s(j)) is not None]),
    )


def lag(delays_s: Sequence[float]) -> Lag:
    """p50 and p99 of some delays; None for none."""
    if not delays_s:
        return Lag(0, None, None)
    return Lag(len(delays_s), percentile(delays_s, 50), percentile(delays_s, 99))


def render(shot: Snapshot, *, limit: int | None = None) -> RenderableType:
    """The frame: a title line, then status counts beside throughput and lag, then the oldest
    jobs in flight and the latest failures. `limit`: the most jobs `collect` read, if known."""
    clock = datetime.fromtimestamp(shot.now, UTC).strftime("%H:%M:%S UTC")
    title = Text.assemble(
        ("imageq top", "bold"),
        f"  {clock}  ·  {shot.jobs_seen} job records  ·  ",
        (f"{shot.in_flight} in flight", "bold cyan"),
        f"  ·  window {shot.window_s / 60:g} min",
    )
    if limit is not None and shot.jobs_seen >= limit:
        title.append(f"  (first {limit} records read)", style="yellow")
    side_by_side = Table.grid(padding=(0, 4))
    side_by_side.add_row(_counts_table(shot), _rates_table(shot))
    return Group(title, side_by_side, _in_flight_table(shot), _failures_table(shot))


def snapshot_json(shot: Snapshot, *, limit: int | None = None) -> dict[str, Any]:
    """The frame as plain JSON values, times in ISO 8601 UTC; `truncated` when `collect` stopped
    at `limit` records."""
    return {
        "at": iso_time(shot.now),
        "window_s": shot.window_s,
        "jobs_seen": shot.jobs_seen,
        "truncated": limit is not None and shot.jobs_seen >= limit,
        "counts": {str(status): count for status, count in shot.counts.items()},
        "in_flight": shot.in_flight,
        "oldest_in_flight": [
            {**asdict(job), "status": str(job.status)} for job in shot.oldest_in_flight
        ],
        "recent_failures": [
            {**asdict(failure), "at": iso_time(failure.at)} for failure in shot.recent_failures
        ],
        "dead_letters": shot.dead_letters,
        "finished_in_window": shot.finished_in_window,
        "throughput_per_min": shot.throughput_per_min,
        "lag": {
            "queue_wait": asdict(shot.queue_wait),
            "generation": asdict(shot.generation),
            "webhook_delivery": asdict(shot.webhook_delivery),
        },
    }


def collect(store_redis: redis.Redis, prefix: str, *, limit: int = 5000) -> list[Job]:
    """Up to `limit` job records, found by SCAN (so never blocking Redis for long) and read with
    pipelined HGETALLs. Records that vanish (TTL) or do not parse are left out."""
    keys = list(islice(_job_keys(store_redis, prefix), limit))
    jobs: list[Job] = []
    for start in range(0, len(keys), _SCAN_COUNT):
        with store_redis.pipeline(transaction=False) as pipe:
            for key in keys[start : start + _SCAN_COUNT]:
                pipe.hgetall(key)
            raws = pipe.execute()
        for raw in raws:
            try:
                jobs.append(Job.from_hash(raw))
            except (KeyError, TypeError, ValueError):  # gone since the SCAN, or not a job
                continue
    return jobs


def _job_keys(client: redis.Redis, prefix: str) -> Iterator[bytes]:
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + ":job:*"
    yield from client.scan_iter(match=pattern, count=_SCAN_COUNT, _type="HASH")


def _failures(jobs: Sequence[Job], dead: Mapping[str, Mapping[str, Any]]) -> list[Failure]:
    failures = [
        Failure(job.job_id, str(job.status), job.finished_at or job.updated_at, _reason(job.error))
        for job in jobs
        if job.status in _FAILED
    ]
    failures += [
        Failure(job_id, "webhook dead", float(letter.get("at", 0)), str(letter.get("reason")))
        for job_id, letter in dead.items()
    ]
    return sorted(failures, key=lambda failure: failure.at, reverse=True)


def _reason(error: Mapping[str, Any] | None) -> str:
    if not error:
        return "no reason recorded"
    status = f" (HTTP {error['http_status']})" if error.get("http_status") else ""
    return f"{error.get('type', 'Error')}{status}: {error.get('message', '')}"


def _webhook_delay_s(job: Job) -> float | None:
    """From the job's end to the start of its first webhook attempt answered 2xx."""
    for attempt in job.webhook_attempts:
        status = attempt.get("http_status")
        if job.finished_at is not None and status is not None and 200 <= status < 300:
            return float(attempt["at"]) - job.finished_at
    return None


def _counts_table(shot: Snapshot) -> Table:
    table = Table(title="jobs by status", title_justify="left")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for status, count in shot.counts.items():
        table.add_row(f"[{STATUS_COLOURS[status].terminal}]{status}[/]", str(count))
    table.add_row("[dim]webhooks dead[/]", str(shot.dead_letters))
    return table


def _rates_table(shot: Snapshot) -> Table:
    table = Table(title=f"last {shot.window_s / 60:g} min", title_justify="left")
    table.add_column("measure")
    table.add_column("n", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_row("finished / min", f"{shot.throughput_per_min:.1f}", "", "")
    for name, measured in (
        ("queue wait", shot.queue_wait),
        ("generation", shot.generation),
        ("webhook lag", shot.webhook_delivery),
    ):
        table.add_row(name, str(measured.count), _secs(measured.p50_s), _secs(measured.p99_s))
    return table


def _in_flight_table(shot: Snapshot) -> Table:
    table = Table(title="oldest in flight", title_justify="left", expand=True)
    table.add_column("job", ratio=1, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("polls", justify="right")
    for job in shot.oldest_in_flight:
        table.add_row(shown(job.job_id), str(job.status), f"{job.age_s:.1f} s", str(job.poll_count))
    if not shot.oldest_in_flight:
        table.add_row("[dim]nothing in flight[/]", "", "", "")
    return table


def _failures_table(shot: Snapshot) -> Table:
    table = Table(title="recent failures", title_justify="left", expand=True)
    table.add_column("when (UTC)", no_wrap=True)
    table.add_column("job", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("reason", ratio=1, overflow="fold")
    for failure in shot.recent_failures:
        when = datetime.fromtimestamp(failure.at, UTC).strftime("%H:%M:%S")
        # A reason may quote a prompt or a receiver's answer: data, not markup.
        kind = shown(failure.kind, style="red")
        table.add_row(when, shown(failure.job_id), kind, shown(failure.reason))
    if not shot.recent_failures:
        table.add_row("[dim]none[/]", "", "", "")
    return table


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
