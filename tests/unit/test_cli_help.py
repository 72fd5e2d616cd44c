"""The command list of `imageq --help`: each command's summary is one line, since typer prints
the first paragraph of its docstring with the docstring's own line breaks."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from imageq.cli.main import app


def _callbacks(group: typer.Typer) -> Iterator[Any]:
    for command in group.registered_commands:
        yield command.callback
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        yield from _callbacks(sub.typer_instance)


CALLBACKS = list(_callbacks(app))


def test_every_command_is_found() -> None:
    """The walk sees the commands (a guard on this test)."""
    assert len(CALLBACKS) >= 10


@pytest.mark.parametrize("callback", CALLBACKS, ids=lambda callback: callback.__name__)
def test_summary_is_one_line(callback: Any) -> None:
    """The docstring's first paragraph has no line break."""
    summary = (inspect.getdoc(callback) or "").split("\n\n")[0]
    assert summary
    assert "\n" not in summary, summary
