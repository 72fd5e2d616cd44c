"""The JSON contract of every command, for scripts: with `--json` on the command line, errors too
are one JSON object (on stderr), usage errors from the argument parser included.

`ContractGroup` is the root command group: it notes whether `--json` was given, turns what
typer would print as a rich error panel into the error object, and makes help show flags as
flags. `print_error` is what `imageq.cli.views.fail` prints with.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from importlib import resources
from typing import Any, Final

import redis
import typer
from kombu.exceptions import OperationalError
from rich.console import Console
from typer.core import TyperGroup

from imageq.cli.exits import Exit
from imageq.ops.terminal_text import shown
from imageq.worker.errors import ImageqError, WriteNotReplicated

JSON_FLAG: Final = "--json"
JSON_HELP: Final = "Print one JSON object (errors too, on stderr), for scripts."
# What `"type"` of an error object may be (cli/schemas/error.json lists the same).
ERROR_TYPES: Final = (
    "usage",
    "invalid",
    "not_found",
    "wait_timeout",
    "not_all_succeeded",
    "unsupported",
    "aborted",
    "unavailable",
    "interrupted",
)
# Redis down or unreachable, seen through redis-py (the job store) or kombu (the broker); or
# a write its replicas did not acknowledge (during a failover): all worth trying again.
UNAVAILABLE_ERRORS: Final = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
    WriteNotReplicated,
)

_as_json: ContextVar[bool] = ContextVar("imageq_cli_as_json", default=False)


def wants_json(args: Sequence[str]) -> bool:
    """`--json` among the arguments, before any `--` (after it, arguments are data)."""
    end = args.index("--") if "--" in args else len(args)
    return JSON_FLAG in args[:end]


def json_mode() -> bool:
    """Whether the command running was given `--json`."""
    return _as_json.get()


def error_object(message: str, code: int, *, kind: str | None = None) -> dict[str, Any]:
    """The error object: `{"error": {"type", "message", "exit_code"}}`; `type` defaults to the
    exit code's name (`not_found`, `invalid`...)."""
    name = kind or Exit(code).name.lower()
    return {"error": {"type": name, "message": message, "exit_code": int(code)}}


def print_error(message: str, code: int, *, kind: str | None = None) -> None:
    """On stderr: the error object with `--json`, else `message` in red (data, never markup)."""
    if json_mode():
        typer.echo(json.dumps(error_object(message, code, kind=kind)), err=True)
    else:
        Console(stderr=True).print(shown(message, style="red"))


def command_schema(path: Sequence[str]) -> dict[str, Any]:
    """The JSON Schema of a command's `--json` stdout object, by its path (`["webhooks",
    "replay"]`), or of the error object (`["error"]`): `cli/schemas/<path joined by '-'>.json`."""
    file = resources.files("imageq.cli").joinpath(f"schemas/{'-'.join(path)}.json")
    schema: dict[str, Any] = json.loads(file.read_text())
    return schema


def unavailable_message(error: Exception) -> str:
    """What to say when Redis did not answer (redis-py names host and port, never a password),
    or its replicas did not acknowledge a write (try again with the same job id)."""
    if isinstance(error, WriteNotReplicated):
        return f"Redis replicas did not confirm in time: {error}; try again"
    return f"Redis did not answer: {error}"


class ContractGroup(TyperGroup):
    """The root group: the JSON contract for errors, and flags shown as flags in help."""

    def main(  # type: ignore[override]  # the same parameters, passed on as they came
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not wants_json(argv):
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        token = _as_json.set(True)
        try:
            code = self._main_json(argv, prog_name, complete_var, **extra)
        finally:
            _as_json.reset(token)
        if not standalone_mode:
            return code
        sys.exit(code)

    def _main_json(
        self, argv: list[str], prog_name: str | None, complete_var: str | None, **extra: Any
    ) -> int:
        """Run the command; whatever would end it with an error message ends it with the error
        object instead. The exit code."""
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except typer.TyperException as error:  # the parser's: a missing argument, a bad value
            print_error(error.format_message(), error.exit_code, kind="usage")
            return error.exit_code
        except UNAVAILABLE_ERRORS as error:
            print_error(unavailable_message(error), Exit.UNAVAILABLE)
            return Exit.UNAVAILABLE
        except ImageqError as error:
            print_error(f"{type(error).__name__}: {error}", Exit.INVALID, kind="invalid")
            return Exit.INVALID
        except typer.Abort:
            print_error("aborted", Exit.NOT_ALL_SUCCEEDED, kind="aborted")
            return Exit.NOT_ALL_SUCCEEDED
        return code if isinstance(code, int) else Exit.OK

    def get_params(self, ctx: Any) -> list[Any]:
        return _as_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _mark_flags(command, ctx)
        return command


def _mark_flags(command: Any, ctx: Any) -> None:
    """Flags of `command` (and of its subcommands) show no value in help."""
    _as_flags([*command.params, command.get_help_option(ctx)])
    for sub in getattr(command, "commands", {}).values():
        _mark_flags(sub, ctx)


def _as_flags(params: Iterable[Any]) -> list[Any]:
    # typer's rich help prints each option's type beside it, `<bool>` for a flag too, as if it
    # took a value; an empty metavar is printed instead of the type.
    params = [param for param in params if param is not None]
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params
