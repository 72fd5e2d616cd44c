"""The `imageq` command line.

Exit codes scripts can rely on: 0 done, 1 a job or record was not found or an action failed,
2 bad usage or invalid input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from config import get_settings
from producers.api import ImageQueue
from worker.errors import InvalidParams, JobNotFound

app = typer.Typer(help="imageq: image generation jobs on Celery and Redis.", no_args_is_help=True)
webhooks = typer.Typer(help="Webhook deliveries: dead letters and replays.", no_args_is_help=True)
app.add_typer(webhooks, name="webhooks")
console = Console()


def _queue() -> ImageQueue:
    return ImageQueue(get_settings())


@webhooks.command("dead-letters")
def dead_letters(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")] = False,
) -> None:
    """List webhook deliveries that ran out of retries."""
    letters = _queue().dead_letters()
    if as_json:
        typer.echo(json.dumps(letters, sort_keys=True))
        return
    table = Table("job", "given up at (UTC)", "attempts", "reason")
    for job_id, letter in sorted(letters.items(), key=lambda item: item[1]["at"]):
        when = datetime.fromtimestamp(letter["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(job_id, when, str(letter["attempts"]), letter["reason"])
    console.print(table if letters else "no dead letters")


@webhooks.command("replay")
def replay(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Jobs to resend.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Replay every dead letter.")] = False,
) -> None:
    """Deliver webhooks again, with the same webhook-id so receivers can deduplicate."""
    if bool(job_ids) == all_dead:
        raise typer.BadParameter("give job ids or --all-dead, not both and not neither")
    queue = _queue()
    if all_dead:
        replayed = queue.replay_dead_letters()
        typer.echo(f"replayed {len(replayed)} dead letter(s): {' '.join(replayed)}".rstrip(": "))
        return
    failed = False
    for job_id in job_ids or []:
        try:
            started = queue.replay_webhook(job_id)
        except (JobNotFound, InvalidParams) as error:
            typer.echo(f"{job_id}: {error}", err=True)
            failed = True
            continue
        typer.echo(f"{job_id}: {'replaying' if started else 'a delivery is already under way'}")
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point (`imageq`)."""
    app()


if __name__ == "__main__":
    main()
