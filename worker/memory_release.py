"""Giving the C allocator's free memory back to the system: glibc's `malloc_trim(0)`.

A poller-mode worker's memory grows with its threads mostly in memory that is free but kept:
after a burst of polls, glibc's malloc holds the freed chunks in each thread's arena and heap,
resident, while the live Python objects grew by a fifth of that (tracemalloc against RSS,
`python -m bench.poller_memory`). `malloc_trim(0)` hands every free page of every arena back
(about 0.3 ms on a worker's heaps, a few ms after a burst). Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from functools import cache
from typing import Final

# No per-thread malloc cache (glibc's tcache): each thread's cache pins chunks its work freed,
# resident and out of `malloc_trim`'s reach, so a poller-mode worker's memory grew with its
# threads (3 pairs: 5.2 KB per job in flight against 8.7). Read by glibc when a process
# starts, so it goes in the environment a worker is started with; ignored by other C libraries.
MALLOC_TUNABLES: Final = "glibc.malloc.tcache_count=0"


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    # The process's own symbols, the C library's among them (no search, no subprocess).
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Give the allocator's free pages back to the system; whether any were (False where
    there is no `malloc_trim`)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def worker_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a worker process: with `MALLOC_TUNABLES`, unless `GLIBC_TUNABLES` is set
    already (the user's own tunables win)."""
    return {"GLIBC_TUNABLES": MALLOC_TUNABLES, **env}
