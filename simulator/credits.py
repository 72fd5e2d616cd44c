"""What a simulated task costs, in credits, by quality and resolution.

The amounts are made up: the API documents neither a price per image nor how `credits_used`
varies, only that the query answer reports it (its one example says 100). They only need to
differ by quality and resolution, so that imageq's per-group totals and estimates are tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

MADE_UP_CREDITS: Final[Mapping[str, Mapping[str, int]]] = {
    "low": {"1K": 10, "2K": 20, "4K": 40},
    "medium": {"1K": 30, "2K": 60, "4K": 120},
    "high": {"1K": 100, "2K": 200, "4K": 400},
}
"""Credits of one completed task: quality -> resolution -> credits (made up)."""


def task_credits(
    table: Mapping[str, Mapping[str, int]], *, quality: str, resolution: str, completed: bool
) -> int:
    """What a task reports as `credits_used`: its price once completed, 0 before or if failed."""
    if not completed:
        return 0
    return table.get(quality, {}).get(resolution, 0)
