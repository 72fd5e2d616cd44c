"""Recent generation times per quality and resolution, kept in the worker process for a while.

The adaptive schedule places every poll by them; reading Redis before each poll would cost a
round trip per poll, so each process keeps what it read for `refresh_s` seconds. Samples a few
seconds old place a poll as well as fresh ones: the window holds the last hundred jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Load = Callable[[str, str], list[float]]


class SampleCache:
    """Generation times per (quality, resolution), ascending, read again after `refresh_s`."""

    def __init__(self, load: Load, *, refresh_s: float, clock: Callable[[], float]) -> None:
        self._load = load
        self._refresh_s = refresh_s
        self._clock = clock
        self._held: dict[tuple[str, str], tuple[float, tuple[float, ...]]] = {}
        self._lock = threading.Lock()

    def ordered(self, quality: str, resolution: str) -> tuple[float, ...]:
        """The cell's samples, ascending: those read less than `refresh_s` ago, else fresh ones."""
        cell = (quality, resolution)
        now = self._clock()
        with self._lock:
            held = self._held.get(cell)
        if held is not None and now - held[0] < self._refresh_s:
            return held[1]
        samples = tuple(sorted(self._load(quality, resolution)))
        with self._lock:
            self._held[cell] = (now, samples)
        return samples
