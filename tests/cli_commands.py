"""The commands of `imageq`, found by walking the command tree typer builds: what the JSON
contract tests run, so that a command added without its row in their tables fails them by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from imageq.cli.main import app

CommandPath = tuple[str, ...]


def root_command() -> Any:
    return typer.main.get_command(app)


def walk(command: Any, path: CommandPath = ()) -> Iterator[tuple[CommandPath, Any]]:
    """Every command and group under `command` (itself first), with its path of names."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


def leaf_commands() -> dict[CommandPath, Any]:
    """The commands that run something, by path (`("webhooks", "replay")`): every command that
    is not a group, and a group (not the root) that does something on its own, such as a
    `batches` listing beside `batches show`."""
    return {
        path: command
        for path, command in walk(root_command())
        if not hasattr(command, "commands") or (path and command.invoke_without_command)
    }


def schema_name(path: CommandPath) -> str:
    """The schema file's stem of a command: its path joined by '-'."""
    return "-".join(path)
