"""`imageq webhooks`: dead letters and replays."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from imageq.cli.exits import Exit
from imageq.config import get_settings
from imageq.ops.terminal_text import shown
from imageq.ops.webhook_replays import WebhookReplays
from imageq.worker.errors import InvalidParams, JobNotFound

webhooks = typer.Typer(help="Webhook deliveries: dead letters and replays.", no_args_is_help=True)


@webhooks.command("dead-letters")
def dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """List webhook deliveries that ran out of retries."""
    letters = WebhookReplays(get_settings()).dead_letters()
    if as_json:
        typer.echo(json.dumps(letters, sort_keys=True))
        return
    table = Table("job", "given up at (UTC)", "attempts", "reason")
    for job_id, letter in sorted(letters.items(), key=lambda item: item[1]["at"]):
        when = datetime.fromtimestamp(letter["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(shown(job_id), when, str(letter["attempts"]), shown(letter["reason"]))
    Console().print(table if letters else "no dead letters")


@webhooks.command("replay")
def replay(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Jobs to resend.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Replay every dead letter.")] = False,
) -> None:
    """Deliver webhooks again, with the same webhook-id so receivers can deduplicate."""
    if bool(job_ids) == all_dead:
        raise typer.BadParameter("give job ids or --all-dead, not both and not neither")
    replays = WebhookReplays(get_settings())
    if all_dead:
        replayed = replays.replay_dead_letters()
        typer.echo(f"replayed {len(replayed)} dead letter(s): {' '.join(replayed)}".rstrip(": "))
        return
    failed = False
    for job_id in job_ids or []:
        try:
            started = replays.replay(job_id)
        except (JobNotFound, InvalidParams) as error:
            typer.echo(f"{job_id}: {error}", err=True)
            failed = True
            continue
        typer.echo(f"{job_id}: {'replaying' if started else 'a delivery is already under way'}")
    if failed:
        raise typer.Exit(Exit.NOT_FOUND)
