"""`imageq bulk --estimate FILE`: what a bulk file would cost and take, before anything is
queued, from the credits and generation times of recent jobs of each quality and resolution."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer
from rich.table import Table

from imageq.cli.views import err, out
from imageq.config import Settings
from imageq.ops.terminal_text import shown
from imageq.producers.bulkfile import BulkRow
from imageq.worker.domain.cost import Estimate, Group, estimate_file
from imageq.worker.runtime import connect_store


def estimate_rows(settings: Settings, rows: Sequence[BulkRow], *, concurrency: int) -> Estimate:
    """The estimate of `rows` from the samples in Redis (read only: nothing is queued)."""
    store = connect_store(settings)
    groups: list[Group] = [
        (str(row.options["quality"]), str(row.options["resolution"])) for row in rows
    ]
    credits = {group: store.credit_samples(*group) for group in set(groups)}
    times = {group: store.generation_samples(*group) for group in set(groups)}
    return estimate_file(
        groups,
        credit_samples=credits,
        time_samples=times,
        min_samples=settings.cost.estimate_min_samples,
        concurrency=concurrency,
    )


def estimate_json(
    estimate: Estimate, *, rows: int, refused: int, concurrency: int
) -> dict[str, Any]:
    """The one `--json` object of `bulk --estimate`."""
    return {
        "estimate": True,
        "rows": rows,
        "refused": refused,
        "concurrency": concurrency,
        "credits": estimate.credits,
        "job_seconds": estimate.job_seconds,
        "wall_s": estimate.wall_s,
        "enough_samples": estimate.enough,
        "groups": [
            {
                "quality": group.quality,
                "resolution": group.resolution,
                "rows": group.rows,
                "samples": group.samples,
                "credits_median": group.credits_median,
                "generation_s_median": group.generation_s_median,
                "enough_samples": group.enough,
            }
            for group in estimate.groups
        ],
    }


def print_estimate(result: dict[str, Any], *, as_json: bool, min_samples: int) -> None:
    """Print the estimate: the one JSON object, or a table and a line per thin group."""
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=shown(f"estimate of {result['rows']} row(s); nothing queued"))
    for name in ("quality", "resolution", "rows", "samples", "credits each", "seconds each"):
        table.add_column(name, justify="left" if name in ("quality", "resolution") else "right")
    for group in result["groups"]:
        table.add_row(
            group["quality"],
            group["resolution"],
            str(group["rows"]),
            str(group["samples"]),
            _number(group["credits_median"]),
            _number(group["generation_s_median"]),
        )
    out.print(table)
    for group in result["groups"]:
        if not group["enough_samples"]:
            err.print(
                shown(
                    f"too few samples for {group['quality']} {group['resolution']}:"
                    f" {group['samples']} recent job(s), {min_samples} wanted",
                    style="yellow",
                )
            )
    out.print(
        shown(
            f"expected: {_number(result['credits'])} credits, {_number(result['job_seconds'])} s"
            f" of generation, about {_number(result['wall_s'])} s at"
            f" {result['concurrency']} at a time"
        )
    )


def _number(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.1f}".removesuffix(".0")
