"""The colours of job statuses, defined once: the terminal's (`imageq top`, `imageq status`)
and the HTML batch report's, side by side, so a new status gets all of them in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

from imageq.worker.domain.status import JobStatus


class StatusColours(NamedTuple):
    """How one status is shown."""

    terminal: str
    """A rich colour name, so that the terminal's theme picks the shade, on dark or light
    ("default" is the theme's own text colour)."""
    ink: str
    """HTML: text, badge and chart marker, on a white page."""
    tint: str
    """HTML: the background of the badge and the count chip."""


STATUS_COLOURS: Final[Mapping[JobStatus, StatusColours]] = {
    JobStatus.QUEUED: StatusColours("default", "#475569", "#f1f5f9"),
    JobStatus.SUBMITTED: StatusColours("cyan", "#1d4ed8", "#dbeafe"),
    JobStatus.SUCCEEDED: StatusColours("green", "#15803d", "#dcfce7"),
    JobStatus.FAILED: StatusColours("red", "#b91c1c", "#fee2e2"),
    JobStatus.TIMED_OUT: StatusColours("red", "#c2410c", "#ffedd5"),
    JobStatus.CANCELLED: StatusColours("yellow", "#6b7280", "#f3f4f6"),
}
