"""A soak run's results file (`results.json`) and its short summary (`report.md`), the
second rendered from the first alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHECK_NAMES = {
    "outcomes": "every job ended as the simulator made it end",
    "lost": "no job lost (each finished and was notified)",
    "submitted_twice": "no job accepted by the API twice (per `out_task_id`)",
    "notified_twice": "no job notified twice (2xx per `webhook-id`)",
    "recovery": "every job held up by a fault moved on within the bound",
}


def write_results(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    (out / "report.md").write_text(render_markdown(results))


def render_markdown(results: dict[str, Any]) -> str:
    plan, checks, jobs = results["plan"], results["checks"], results["jobs"]
    verdict = "**passed**" if results["passed"] else "**FAILED**"
    lines = [
        f"# imageq soak ({results['mode']})",
        "",
        f"{jobs['enqueued']:,} jobs through {plan['workers']} workers and the beat,"
        f" {plan['timing']}; chaos for {plan['chaos_s'] / 60:.1f} min, {results['wall_s'] / 60:.1f}"
        f" min in all ({results['started_at']}, seed {plan['seed']}). Verdict: {verdict}.",
        "",
        "| check | result |",
        "|---|---|",
    ]
    for name, title in CHECK_NAMES.items():
        lines.append(f"| {title} | {_check_cell(name, checks[name])} |")
    lines += [
        "",
        "| fault | count | when (s from start) | jobs held up | worst late | worst resume |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for kind, row in results["recovery"]["per_kind"].items():
        lines.append(
            f"| {kind} | {row['count']} | {row['when_s']} | {row['held_up']} |"
            f" {row['worst_late_s']} s | {row['worst_resume_s']} s |"
        )
    recovery = checks["recovery"]
    lines += [
        f"| (no fault) | | | {recovery['held_up_without_fault']} | | |",
        "",
        f"*Held up*: a job moved on more than {results['recovery']['late_after_s']} s after its"
        " work was due (progress sampled every"
        f" {plan['sample_s']} s), given to the latest fault that happened while it waited and"
        " by the time its work was due. *Late*: how long after. *Resume*: how long after the"
        " fault's end (a kill's end is the kill) the jobs whose work was due by then moved on.",
    ]
    causes = checks["outcomes"]["by_cause"]
    if causes:
        lines += ["", "Wrong outcomes by cause:", ""]
        lines += [f"- {count} x {cause}" for cause, count in causes.items()]
    api = results["api"]
    lines += [
        "",
        f"API: {api['requests']:,} requests; {api['queries_beyond_polls']:,} queries beyond the"
        " jobs' own polls (look-ups after doubtful submits, polls repeated after a kill or a"
        " redelivery). Marker faults in prompts: "
        + (", ".join(f"{k} x {v}" for k, v in jobs["markers"].items()) or "none")
        + ".",
        "",
    ]
    return "\n".join(lines)


def _check_cell(name: str, check: dict[str, Any]) -> str:
    mark = "yes" if check["passed"] else "**no**"
    if name == "recovery":
        return (
            f"{mark}: worst {check['worst_late_s']} s ({check['worst_fault']}), bound"
            f" {check['bound_s']:g} s + {check['resolution_s']:g} s sampling"
        )
    if name == "lost":
        return f"{mark}: {check['count']} lost, {check['enqueue_refused']} refused at enqueue"
    return f"{mark}: {check['count']}"
