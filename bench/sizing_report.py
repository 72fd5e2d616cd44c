"""The sizing benchmark's report.md, rendered from its results.json. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bench.sizing_fit import FLAT, SPLIT

UNITS: Final = {
    "worker_cpu_ms": "ms",
    "redis_cpu_ms": "ms",
    "broker_messages": "messages",
    "redis_commands": "commands",
    "api_requests": "requests",
    "network_bytes": "bytes",
    "simulator_cpu_ms": "ms",
    "bench_cpu_ms": "ms",
    "redis_bytes_in_flight": "bytes",
    "redis_bytes_finished": "bytes",
}


def _spread(entry: Mapping[str, float], digits: int = 2) -> str:
    return (
        f"{entry['median']:,.{digits}f} ({entry['min']:,.{digits}f} to {entry['max']:,.{digits}f})"
    )


def render(document: Mapping[str, Any]) -> str:
    """The report as Markdown."""
    plan = document["plan"]
    lines = [
        "# What one job costs, and the sizing model checked on this machine",
        "",
        f"`{document['command']}`: {plan['n']} jobs at once per round, {plan['reps']}"
        f" repetitions, completion times and polling schedule x {plan['latency_scale']};"
        f" {plan['shape']}; {plan['cpus']} cores. Each figure: median (min to max) over the"
        " repetitions. The broker and the job store run on two Redis servers here, so each"
        " one's commands, memory and CPU are its own; the model adds them (one server by"
        " default).",
        "",
    ]
    for mode, fitted in document["fits"].items():
        lines += [
            f"## {mode}",
            "",
            f"Polls per job in the realistic rounds: {_spread(fitted['polls_per_job'])};"
            f" notification lag p99 {_spread(fitted['lag_p99_s'])} s.",
            "",
            "| cost | unit | per job | per poll | at the realistic mix |",
            "|---|---|---:|---:|---:|",
        ]
        for name in SPLIT:
            entry = fitted[name]
            lines.append(
                f"| {name} | {UNITS[name]} | {_spread(entry['per_job'])} |"
                f" {_spread(entry['per_poll'], 3)} | {_spread(entry['at_realistic'])} |"
            )
        for name in FLAT:
            lines.append(f"| {name} | {UNITS[name]} | {_spread(fitted[name], 0)} | | |")
        lines.append("")
    lines += [
        "How each is read: CPU is user + system time from /proc (worker processes, each"
        " redis-server, the simulator, the bench process that enqueues and receives webhooks)"
        " from the hand-over to the last webhook; broker messages are the broker's LPUSH calls"
        " (kombu publishes each message with one); commands are each server's `commandstats`"
        " without INFO; network bytes are Redis's own"
        " `total_net_input_bytes` + `total_net_output_bytes` (the producer's included) and the"
        " kernel's byte counters of the connections open to the API and to the webhook receiver"
        " (`ss -ti`; a connection closed before the end is missed, so they are a floor); Redis"
        " memory in flight is the peak `used_memory` over the idle one, finished is what the"
        " job store still holds one interval after the last webhook. A cost's split: the"
        " `one-poll` rounds (every job done before its first poll) and the realistic ones of"
        " the same repetition give a line, per job + per poll x polls.",
        "",
        "Rounds in the order run (load average before and after, 1 min):",
        "",
        "| rep | mode | workload | polls/job | worker CPU ms/job | lag p99 s | notified once |"
        " load |",
        "|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in document["rounds"]:
        lines.append(
            f"| {r['rep']} | {r['mode']} | {r['workload']} | {r['polls_per_job']:.2f} |"
            f" {r['worker_cpu_ms_per_job']:.2f} | {r['lag_p99_s']:.2f} |"
            f" {r['notified_once']}/{r['n']} |"
            f" {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} |"
        )
    lines += ["", *_capacity(document.get("capacity", []))]
    return "\n".join(lines) + "\n"


def _capacity(checks: list[Mapping[str, Any]]) -> list[str]:
    if not checks:
        return []
    lines = [
        "## The model against this machine's capacity",
        "",
        "1 host (this machine) x 2 worker processes x 32 threads, countdown mode, with Redis,"
        " the simulator and the producer on the same cores. Predicted: the cores the check may"
        " use over the CPU per job of all those parts, measured by a countdown round of the"
        " realistic mix run just before in the same place (the committed medians' prediction"
        " beside it). The cores are `--cores`, a CPU quota set around the whole run (a cgroup:"
        " `cpu.cfs_quota_us`, and `cpu.shares` high enough to get it on a shared machine), or"
        " without one the cores idle over 5 s before. Measured: the highest offered rate kept"
        f" up with: every job notified, p99 of the queue wait and of the lag within the"
        f" project's lag bound ({checks[0]['lag_bound_s']:.2f} s here: interval + jitter + a"
        " quarter interval, as the main benchmark's); beside it, by a looser bound, one poll"
        f" one interval late ({checks[0]['bound_s']:.2f} s), which the steps stop by"
        " (`bench/sizing_capacity.py`).",
        "",
        "| check | cores | CPU ms / job, all parts | predicted jobs/s (bound) | from the"
        " medians | measured jobs/s | measured / predicted | by the looser bound |"
        " load before / after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for check in checks:
        p = check["prediction"]
        ratio = check["measured_over_predicted"]
        lines.append(
            f"| {check['rep']} | {p['idle_cores']:.2f} | {p['cpu_ms_per_job_all_parts']:.1f} |"
            f" {p['jobs_s']:.1f} ({p['bound']}) | {p['jobs_s_from_committed_medians']:.1f} |"
            f" {check['measured_jobs_s']:.1f} | {ratio:.2f} |"
            f" {check['measured_loose_jobs_s']:.1f} ({check['loose_over_predicted']:.2f}) |"
            f" {check['loadavg_before'][0]:.2f} / {check['loadavg_after'][0]:.2f} |"
        )
    lines += [
        "",
        "Steps of each check: the offered rate; first webhooks per second while it was"
        " offered; p99 of the queue wait and of the notification lag of its jobs (bound"
        f" {checks[0]['lag_bound_s']:.2f} s; looser: {checks[0]['bound_s']:.2f} s); the cores the"
        " workers, Redis, the simulator and the bench used while it was offered, and the jobs/s"
        " the model says those cores carry (their sum over the CPU per job): where the machine"
        " is shared with other work, this is the prediction for the cores actually obtained.",
        "",
        "| check | offered jobs/s | notified jobs/s | queue wait p99 s | lag p99 s | kept up"
        " (looser) |"
        " cores: workers / Redis / simulator / bench | jobs/s those cores allow | load |",
        "|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for check in checks:
        for step in check["steps"]:
            used = step["cores_used"]
            allow = sum(used.values()) / (check["prediction"]["cpu_ms_per_job_all_parts"] / 1000)
            lines.append(
                f"| {check['rep']} | {step['offered_jobs_s']:.1f} |"
                f" {step.get('completed_jobs_s', float('nan')):.1f} |"
                f" {step['queue_wait_p99_s']:.2f} | {step['lag_p99_s']:.2f} |"
                f" {'yes' if step['kept_up'] else 'no'}"
                f" ({'yes' if step['kept_up_loose'] else 'no'}) | {used['worker']:.2f} /"
                f" {used['redis']:.2f} / {used['simulator']:.2f} / {used['bench']:.2f} |"
                f" {allow:.1f} | {step['loadavg'][0]:.2f} |"
            )
    return [*lines, ""]
