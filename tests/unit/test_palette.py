"""Status colours, defined once in `imageq.ops.palette` for the terminal and the HTML report."""

from __future__ import annotations

import re

import pytest
from rich.color import Color

from imageq.ops.palette import STATUS_COLOURS
from imageq.worker.domain.status import JobStatus


@pytest.mark.parametrize("status", list(JobStatus))
def test_every_status_has_its_colours(status: JobStatus) -> None:
    """A rich colour for the terminal, and hex ink and tint for the page."""
    colours = STATUS_COLOURS[status]
    Color.parse(colours.terminal)
    assert re.fullmatch(r"#[0-9a-f]{6}", colours.ink)
    assert re.fullmatch(r"#[0-9a-f]{6}", colours.tint)
