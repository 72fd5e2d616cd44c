"""`imageq sizing`: how many worker processes and hosts, how much Redis memory, and what broker
and API rates a load needs, and which limit it meets first (`imageq.ops.sizing_model`,
docs/sizing.md).

Nothing is read but the settings (for their defaults) and the shipped coefficients: no Redis.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import typer
from rich.table import Table

from imageq.cli.exits import Exit
from imageq.cli.views import fail, out
from imageq.config import get_settings
from imageq.ops.sizing_coefficients import load_coefficients, with_overrides
from imageq.ops.sizing_model import (
    Coefficients,
    Deployment,
    Limit,
    Load,
    Sizing,
    size,
)
from imageq.ops.terminal_text import shown

# The flag that gives each shared limit's availability.
LIMIT_FLAGS: Final = {
    "Redis memory": "--redis-memory-gb",
    "API rate": "--api-requests-s",
    "API in flight": "--api-in-flight",
}


def sizing(
    jobs_per_day: Annotated[float, typer.Option(help="Jobs per day.", min=1.0)],
    p99_generation_s: Annotated[
        float, typer.Option(help="p99 of the API's generation time, in seconds.", min=0.1)
    ],
    mode: Annotated[
        Literal["countdown", "poller"] | None,
        typer.Option(help="Polling mode (default: IMAGEQ_POLLING__MODE)."),
    ] = None,
    mean_generation_s: Annotated[
        float | None, typer.Option(help="Mean generation time (default: 0.33 x the p99).", min=0.1)
    ] = None,
    peak_factor: Annotated[
        float, typer.Option(help="Busiest hour's rate over the day's mean rate.", min=1.0)
    ] = 1.0,
    polls_per_job: Annotated[
        float | None, typer.Option(help="Polls per job, if known (default: modelled).", min=1.0)
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Threads per process (default: the setting).", min=1)
    ] = None,
    cores_per_host: Annotated[int, typer.Option(help="Cores of a worker host.", min=1)] = 4,
    processes_per_host: Annotated[
        int | None, typer.Option(help="Worker processes per host (default: one per core).", min=1)
    ] = None,
    cpu_target: Annotated[
        float, typer.Option(help="Share of each core and thread to plan for.", min=0.05, max=1.0)
    ] = 0.7,
    api_latency_s: Annotated[
        float, typer.Option(help="Seconds one API request takes (holds a thread).", min=0.0)
    ] = 0.3,
    webhook_latency_s: Annotated[
        float, typer.Option(help="Seconds one webhook delivery takes.", min=0.0)
    ] = 0.2,
    redis_memory_gb: Annotated[
        float | None, typer.Option(help="Redis memory available (default: unknown).", min=0.0)
    ] = None,
    api_requests_s: Annotated[
        float | None,
        typer.Option(help="The API key's request rate limit (default: unknown).", min=0.0),
    ] = None,
    api_in_flight: Annotated[
        float | None,
        typer.Option(
            help="The API key's concurrent tasks (default: IMAGEQ_LIMITS__MAX_IN_FLIGHT).", min=1.0
        ),
    ] = None,
    worker_cpu_ms: Annotated[
        float | None, typer.Option(help="Override: worker CPU ms per job (besides polls).", min=0.0)
    ] = None,
    worker_cpu_ms_per_poll: Annotated[
        float | None, typer.Option(help="Override: worker CPU ms per poll.", min=0.0)
    ] = None,
    redis_bytes_in_flight: Annotated[
        float | None, typer.Option(help="Override: Redis bytes per job in flight.", min=0.0)
    ] = None,
    redis_bytes_finished: Annotated[
        float | None, typer.Option(help="Override: Redis bytes per finished job kept.", min=0.0)
    ] = None,
    coefficients_file: Annotated[
        Path | None,
        typer.Option("--coefficients", help="Coefficients JSON (default: the shipped ones)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """Size a deployment for a load: processes, hosts, Redis memory, rates, the first limit.

    From per-job costs measured on the simulator (bench/results/sizing/) and the settings'
    polling schedule, record TTL and threads; docs/sizing.md explains the model.
    """
    settings = get_settings()
    chosen = mode or settings.polling.mode
    try:
        text = None if coefficients_file is None else coefficients_file.read_text()
        shipped = load_coefficients(text)[chosen]
    except FileNotFoundError:
        raise fail(f"no coefficients file {coefficients_file}", Exit.NOT_FOUND) from None
    except (ValueError, KeyError, TypeError) as error:
        raise fail(f"unreadable coefficients file: {error}", Exit.INVALID) from None
    coefficients = with_overrides(
        shipped,
        worker_cpu_ms=worker_cpu_ms,
        worker_cpu_ms_per_poll=worker_cpu_ms_per_poll,
        redis_bytes_in_flight=redis_bytes_in_flight,
        redis_bytes_finished=redis_bytes_finished,
    )
    load = Load(jobs_per_day, p99_generation_s, mean_generation_s, peak_factor)
    cap = settings.limits.max_in_flight
    deployment = Deployment(
        mode=chosen,
        threads=threads or settings.worker.concurrency,
        poller_threads=settings.polling.poller_max_threads,
        cores_per_host=cores_per_host,
        processes_per_host=processes_per_host,
        cpu_target=cpu_target,
        first_poll_s=settings.polling.first_delay_s,
        adaptive=settings.polling.adaptive,
        adaptive_min_s=settings.polling.adaptive_floor_s,
        adaptive_max_s=settings.polling.adaptive_max_s,
        interval_s=settings.polling.interval_s,
        jitter_s=settings.polling.jitter_s,
        record_ttl_s=settings.redis.record_ttl_s,
        api_latency_s=api_latency_s,
        webhook_latency_s=webhook_latency_s,
        redis_memory_gb=redis_memory_gb,
        api_requests_s=api_requests_s,
        api_in_flight=api_in_flight if api_in_flight is not None else (cap or None),
    )
    answer = size(load, deployment, coefficients, polls=polls_per_job)
    result = sizing_json(load, deployment, coefficients, answer)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        print_sizing(result)


def sizing_json(
    load: Load, deployment: Deployment, coefficients: Coefficients, answer: Sizing
) -> dict[str, Any]:
    """The one `--json` object of `imageq sizing`."""
    by_name = {limit.name: limit for limit in answer.limits}
    first = by_name[answer.first_limit]
    shared = by_name.get(answer.first_shared_limit or "")
    return {
        "inputs": {
            "jobs_per_day": load.jobs_per_day,
            "p99_generation_s": load.p99_generation_s,
            "mean_generation_s": load.mean_s,
            "peak_factor": load.peak_factor,
            **asdict(deployment),
            "processes_per_host": deployment.host_processes,
        },
        "coefficients": asdict(coefficients),
        "peak_jobs_s": load.peak_jobs_s,
        "polls_per_job": answer.polls_per_job,
        "jobs_in_flight": answer.in_flight,
        "worker": {
            "cpu_ms_per_job": answer.worker_cpu_ms_per_job,
            "thread_s_per_job": answer.thread_s_per_job,
            "jobs_s_per_process": answer.process_jobs_s,
            "process_bound": answer.process_bound,
            "processes": answer.processes,
            "threads_per_process": deployment.threads,
            "hosts": answer.hosts,
        },
        "redis": {
            "memory_bytes": answer.redis_memory_bytes,
            "in_flight_bytes": answer.redis_in_flight_bytes,
            "retained_bytes": answer.redis_retained_bytes,
            "commands_s": answer.redis_commands_s,
        },
        "broker_messages_s": answer.broker_messages_s,
        "api_requests_s": answer.api_requests_s,
        "network_bytes_s": answer.network_bytes_s,
        "limits": [_limit_json(limit) for limit in answer.limits],
        "first_limit": {"name": first.name, "max_jobs_per_day": first.max_jobs_per_day},
        "first_shared_limit": None
        if shared is None
        else {"name": shared.name, "max_jobs_per_day": shared.max_jobs_per_day},
    }


def _limit_json(limit: Limit) -> dict[str, Any]:
    return {**asdict(limit), "use": limit.use}


def print_sizing(result: dict[str, Any]) -> None:
    """The answer as a few lines and a table of limits."""
    worker, redis_ = result["worker"], result["redis"]
    inputs = result["inputs"]
    lines = [
        f"load: {result['peak_jobs_s']:.2f} jobs/s at peak, {result['jobs_in_flight']:,.0f} in"
        f" flight, {result['polls_per_job']:.1f} polls per job ({inputs['mode']})",
        f"workers: {worker['processes']} process(es) x {worker['threads_per_process']} threads"
        f" on {worker['hosts']} host(s) of {inputs['cores_per_host']} cores;"
        f" {worker['jobs_s_per_process']:.1f} jobs/s per process, bound by"
        f" {worker['process_bound']} ({worker['cpu_ms_per_job']:.1f} ms CPU per job)",
        f"redis: {_bytes(redis_['memory_bytes'])} ({_bytes(redis_['in_flight_bytes'])} in"
        f" flight, {_bytes(redis_['retained_bytes'])} of finished records kept"
        f" {inputs['record_ttl_s'] / 86400:g} days), {redis_['commands_s']:,.0f} commands/s",
        f"broker: {result['broker_messages_s']:,.1f} messages/s;"
        f" API: {result['api_requests_s']:,.1f} requests/s;"
        f" network: {_bytes(result['network_bytes_s'])}/s",
    ]
    for line in lines:
        out.print(shown(line))
    table = Table(title=shown("limits (use at this load; the load each one allows)"))
    for name in ("limit", "needed", "available", "use", "allows jobs/day"):
        table.add_column(name, justify="left" if name == "limit" else "right")
    for limit in result["limits"]:
        table.add_row(
            limit["name"],
            _amount(limit["needed"], limit["unit"]),
            "unknown" if limit["available"] is None else _amount(limit["available"], limit["unit"]),
            "-" if limit["use"] is None else f"{limit['use']:.0%}",
            "-" if limit["max_jobs_per_day"] is None else f"{limit['max_jobs_per_day']:,.0f}",
        )
    out.print(table)
    first, shared = result["first_limit"], result["first_shared_limit"]
    out.print(shown(f"first limit: {_reach(first)}", style="bold"))
    if shared is not None and shared["name"] != first["name"]:
        out.print(shown(f"first limit more workers do not lift: {_reach(shared)}"))
    over = [limit for limit in result["limits"] if (limit["use"] or 0) > 1]
    if over:
        named = ", ".join(f"{limit['name']} ({limit['use']:.0%})" for limit in over)
        out.print(shown(f"this load is beyond: {named}", style="red"))
    unknown = [limit["name"] for limit in result["limits"] if limit["available"] is None]
    if unknown:
        flags = ", ".join(f"{name} ({LIMIT_FLAGS[name]})" for name in unknown)
        out.print(shown(f"not known, so not checked: {flags}", style="yellow"))


def _reach(limit: dict[str, Any]) -> str:
    allows = limit["max_jobs_per_day"]
    return str(limit["name"]) + ("" if allows is None else f" at {allows:,.0f} jobs/day")


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        return _bytes(value)
    return f"{value:,.2f} {unit}" if unit == "cores" else f"{value:,.1f} {unit}"


def _bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
