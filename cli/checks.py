"""`imageq health`: the broker, the job store, the API, the workers and the scheduled runs;
exit 0 or 1.

Register with `app.command("health")(health_command)`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from imageq.cli.contract import JSON_HELP
from imageq.ops.health import DEFAULT_TIMEOUT_S, CheckName, evaluate, exit_code, render


def health_command(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    skip: Annotated[
        list[CheckName] | None,
        typer.Option("--skip", help="Leave out a check (repeatable)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, max=300, help="Seconds each check may take.")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Check the broker, the job store, the API, the workers and the scheduled runs.

    A worker must answer a ping; every scheduled run's last tick must not have failed, and
    every live worker must hold the scheduler's schedule file.

    Exit 0 if all pass, 1 if any fails: usable as a container healthcheck.
    """
    checks = evaluate(skip=skip or [], timeout_s=timeout)
    typer.echo(render(checks, as_json=as_json))
    raise typer.Exit(exit_code(checks))
