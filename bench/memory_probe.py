"""A Celery worker that says what holds its memory: `python -m bench.memory_probe worker ...`.

Runs `celery` with the same arguments. On SIGUSR2 it writes, to
`$BENCH_PROBE_DIR/<pid>-<n>.json`, its RSS, its threads by name, how many connection objects
it holds (urllib3, redis-py, sockets, redis-py's 64 KB read buffers) and, when tracemalloc is
on (`PYTHONTRACEMALLOC=N`), the traced total and the top allocations by line. For
`bench.poller_memory`; nothing of it runs in imageq's own worker.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import sys
import threading
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any, Final

# Objects worth counting: what one in-flight poll may add (a connection of each kind).
COUNTED: Final = (
    "urllib3.connection.HTTPConnection",
    "urllib3.connectionpool.HTTPConnectionPool",
    "redis.connection.Connection",
    "redis._parsers.hiredis._HiredisParser",
    "socket.socket",
    "threading.Thread",
    "concurrent.futures.thread._WorkItem",
)
TOP_LINES: Final = 15
_seq = itertools.count()


def snapshot() -> dict[str, Any]:
    """What this process holds now (a few hundred ms on a loaded worker: the gc walk)."""
    with open("/proc/self/statm") as statm:
        rss_kb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    names = Counter(_family(thread.name) for thread in threading.enumerate())
    types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    found: dict[str, Any] = {
        "pid": os.getpid(),
        "rss_kb": rss_kb,
        "threads": dict(names.most_common()),
        "objects": {name: types.get(name, 0) for name in COUNTED},
        "top_types": dict(types.most_common(12)),
    }
    if tracemalloc.is_tracing():
        traced = tracemalloc.take_snapshot().statistics("lineno")
        found["traced_kb"] = sum(stat.size for stat in traced) // 1024
        found["top_lines"] = [
            {"where": str(stat.traceback[0]), "kb": stat.size // 1024, "count": stat.count}
            for stat in traced[:TOP_LINES]
        ]
    return found


def _family(name: str) -> str:
    """A thread's name without its number: `imageq-poll_12` -> `imageq-poll`."""
    return name.rstrip("0123456789").rstrip("_-") or name


def _dump(_signum: int, _frame: FrameType | None) -> None:
    folder = Path(os.environ["BENCH_PROBE_DIR"])
    path = folder / f"{os.getpid()}-{next(_seq)}.json"
    path.with_suffix(".tmp").write_text(json.dumps(snapshot()))
    path.with_suffix(".tmp").rename(path)


def main() -> None:
    if os.environ.get("BENCH_PROBE_DIR"):
        signal.signal(signal.SIGUSR2, _dump)
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
