"""`imageq worker`, `imageq scheduler` and `imageq demo`: the commands that run processes.

They print logs and progress for people, so `--json` on them is refused with the error object;
`IMAGEQ_OBSERVABILITY__LOG_FORMAT=json` gives logs a machine can read.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, Final

import typer

from imageq.cli.exits import Exit
from imageq.cli.views import fail
from imageq.config import get_settings
from imageq.worker.memory_release import worker_environment

# Register worker and scheduler with these: their unknown arguments go on to Celery.
PASS_THROUGH: Final[dict[str, Any]] = {"allow_extra_args": True, "ignore_unknown_options": True}
LONG_RUNNING: Final = "prints logs and progress for people, not one object"


def worker(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=f"Refused: it {LONG_RUNNING}.")] = False,
) -> None:
    """Run a worker: `celery -A imageq.worker.app worker --without-gossip --without-mingle`.

    Heartbeats stay on: Flower lists workers by them (docs/flower.md has what each costs).
    The pool is IMAGEQ_WORKER__POOL; extra arguments go to Celery (`--without-heartbeat`, ...).
    For JSON logs: IMAGEQ_OBSERVABILITY__LOG_FORMAT=json.
    """
    _refuse_json("worker", as_json=as_json)
    lean = ["--without-gossip", "--without-mingle"]
    # Named on the command line, so that Celery patches for gevent before anything else loads.
    named = any(arg in ("-P", "--pool") or arg.startswith("--pool=") for arg in ctx.args)
    pool = [] if named else ["--pool", get_settings().worker.pool]
    command = [sys.executable, "-m", "celery", "-A", "imageq.worker.app", "worker", *lean, *pool]
    command += ctx.args
    # glibc reads its malloc tunables at start: the worker gets them in its environment.
    env = worker_environment(os.environ)
    os.execve(sys.executable, command, env)  # noqa: S606 -- replacing this process is the point


def scheduler(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help=f"Refused: it {LONG_RUNNING}.")] = False,
) -> None:
    """Run the beat (scheduled runs and the sweeper): `celery -A imageq.worker.app beat`."""
    _refuse_json("scheduler", as_json=as_json)
    command = [sys.executable, "-m", "celery", "-A", "imageq.worker.app", "beat", *ctx.args]
    os.execv(sys.executable, command)  # noqa: S606 -- replacing this process is the point


def demo(
    as_json: Annotated[bool, typer.Option("--json", help=f"Refused: it {LONG_RUNNING}.")] = False,
) -> None:
    """Run the demo (the same as `make demo`)."""
    _refuse_json("demo", as_json=as_json)
    from imageq.devenv.demo import main as run_demo

    raise typer.Exit(run_demo())


def _refuse_json(command: str, *, as_json: bool) -> None:
    """Long-running commands have no one object to print: --json is an error, said as JSON."""
    if as_json:
        logs = "for JSON logs set IMAGEQ_OBSERVABILITY__LOG_FORMAT=json"
        raise fail(f"{command} {LONG_RUNNING}; {logs}", Exit.INVALID, kind="unsupported")
