"""`imageq webhooks`: dead letters and replays."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from imageq.cli.contract import JSON_HELP
from imageq.cli.exits import Exit
from imageq.cli.views import fail
from imageq.config import get_settings
from imageq.ops.terminal_text import shown
from imageq.ops.webhook_replays import WebhookReplays
from imageq.worker.domain.payload import iso_time
from imageq.worker.errors import InvalidParams, JobNotFound

webhooks = typer.Typer(help="Webhook deliveries: dead letters and replays.", no_args_is_help=True)


@webhooks.command("dead-letters")
def dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List webhook deliveries that ran out of retries."""
    letters = {
        job_id: {**letter, "at": iso_time(letter["at"])}
        for job_id, letter in WebhookReplays(get_settings()).dead_letters().items()
    }
    if as_json:
        typer.echo(json.dumps(letters, sort_keys=True))
        return
    table = Table("job", "given up at (UTC)", "attempts", "reason")
    for job_id, letter in sorted(letters.items(), key=lambda item: item[1]["at"]):
        table.add_row(shown(job_id), letter["at"], str(letter["attempts"]), shown(letter["reason"]))
    Console().print(table if letters else "no dead letters")


@webhooks.command("replay")
def replay(
    job_ids: Annotated[
        list[str] | None, typer.Argument(metavar="JOB_ID", help="Jobs to resend.")
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Replay every dead letter.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Deliver webhooks again, with the same webhook-id so receivers can deduplicate.

    Exit 3 if any job given is unknown or has no webhook (the others are still replayed).
    """
    if bool(job_ids) == all_dead:
        raise fail("give job ids or --all-dead, not both and not neither", Exit.INVALID)
    replays = WebhookReplays(get_settings())
    if all_dead:
        replayed = replays.replay_dead_letters()
        if as_json:
            typer.echo(json.dumps(_replay_json(replayed, [], [])))
        else:
            line = f"replayed {len(replayed)} dead letter(s): {' '.join(replayed)}"
            typer.echo(line.rstrip(": "))
        return
    started: list[str] = []
    under_way: list[str] = []
    refused: list[tuple[str, str]] = []
    for job_id in job_ids or []:
        try:
            (started if replays.replay(job_id) else under_way).append(job_id)
        except (JobNotFound, InvalidParams) as error:
            refused.append((job_id, str(error)))
    if as_json:
        typer.echo(json.dumps(_replay_json(started, under_way, refused)))
    else:
        for job_id in job_ids or []:
            if job_id in started or job_id in under_way:
                said = "replaying" if job_id in started else "a delivery is already under way"
                typer.echo(f"{job_id}: {said}")
    if refused:
        message = "; ".join(f"{job_id}: {reason}" for job_id, reason in refused)
        raise fail(message, Exit.NOT_FOUND)


def _replay_json(
    replayed: list[str], under_way: list[str], refused: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "replayed": replayed,
        "already_under_way": under_way,
        "refused": [{"job_id": job_id, "reason": reason} for job_id, reason in refused],
    }
