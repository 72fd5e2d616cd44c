"""What one held countdown message costs a worker, object by object.

    python -m bench.held_message_memory [--n 2000]

Starts a Redis of its own and one imageq worker (threads, the project's settings) with
tracemalloc on, publishes N poll messages due in ten minutes (for jobs that do not exist, so
nothing else happens) exactly as a poll publishes its next one, waits until the worker holds
them all, and prints, per held message: the bytes allocated by source line (tracemalloc, the
snapshots before and after), the bytes of each part of a held message (the kombu Message, its
raw payload, the headers, Celery's Request and its copy of the headers, the decoded body, the
ETA, the timer entry, the QoS bookkeeping: a walk of the objects themselves, each object
counted once, in that order). RSS is not shown: a traced process holds the snapshots and the
traces too; `python -m bench.held` measures RSS and CPU without tracing.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import redis

from bench.designs import PRODUCTION, CleanEnvWorker, Round, imageq_values, start_all, stop_all
from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.worker_process import settings_env

COUNTDOWN_S = 600.0
_TRIGGER_DIR = "IMAGEQ_BENCH_HELD_DIR"  # where the parent asks the traced worker for a snapshot


# --- in the worker: tracemalloc, and a walk of the held objects -------------------------------


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.keys()
        yield from value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        yield from value


_LEAVES = (str, bytes, int, float)


def _deep_size(root: Any, seen: set[int]) -> int:
    """Bytes of `root` and the plain data under it (containers, strings, numbers, datetimes)
    not counted before; objects of other kinds (the app, the channel, callbacks) are shared."""
    total, stack = 0, [root]
    while stack:
        value = stack.pop()
        if value is None or isinstance(value, bool) or id(value) in seen:
            continue
        if isinstance(value, int) and -5 <= value <= 256:
            continue  # cached by the interpreter
        seen.add(id(value))
        total += sys.getsizeof(value)
        if not isinstance(value, _LEAVES):
            stack.extend(_children(value))
    return total


def _parts_of(request: Any, seen: set[int]) -> dict[str, int]:
    """The bytes of each part of one held request, in order, each object counted once."""
    from kombu.asynchronous.timer import Entry

    message = request.message
    parts: dict[str, int] = {}

    def count(name: str, *roots: Any) -> None:
        parts[name] = parts.get(name, 0) + sum(_deep_size(root, seen) for root in roots)

    count("kombu Message: headers dict and its values", message.headers)
    count("kombu Message: body (bytes, decoded from base64)", message.body)
    raw = message._raw  # kombu keeps the payload as fetched
    count("kombu Message: raw payload (the base64 body text)", raw.get("body"))
    count("kombu Message: raw payload (properties, delivery_info)", raw)
    count("kombu Message: the object, its errors list and __dict__", message, message.errors)
    if hasattr(message, "__dict__"):
        count("kombu Message: the object, its errors list and __dict__", message.__dict__)
    count("Celery Request: its copy of the headers (request_dict)", request.request_dict)
    payload = request._Request__payload  # the decoded body
    count("Celery Request: decoded body (args, kwargs, embed)", payload)
    count("Celery Request: eta (datetime)", request.eta)
    count("Celery Request: the object, __dict__, delivery_info", request, request.__dict__)
    entries = [ref for ref in gc.get_referrers(request) if isinstance(ref, tuple)]
    for args in entries:
        for entry in gc.get_referrers(args):
            if isinstance(entry, Entry):
                count("timer: Entry, its args and heap item", entry, args, entry.kwargs)
                for item in gc.get_referrers(entry):
                    if isinstance(item, tuple):
                        count("timer: Entry, its args and heap item", item)
    return parts


def _held_requests() -> list[Any]:
    from celery.worker.request import Request

    return [item for item in gc.get_objects() if isinstance(item, Request)]


def _qos_bytes(requests: list[Any]) -> int:
    """The channel's `_delivered` map (one entry per held message), whole."""
    if not requests:
        return 0
    qos = requests[0].message.channel.qos
    return sys.getsizeof(qos._delivered)  # kombu's unacked messages, in memory


def _serve_snapshots(directory: Path) -> None:
    """Answer `<name>.ask` files with `<name>.json`: traced bytes by line, RSS, parts."""
    snapshots: dict[str, tracemalloc.Snapshot] = {}
    while True:
        for ask in sorted(directory.glob("*.ask")):
            name = ask.stem
            try:
                answer = _answer(name, snapshots)
            except Exception as error:  # shown by the parent, which would otherwise time out
                answer = {"error": repr(error)}
            (directory / f"{name}.json").write_text(json.dumps(answer))
            ask.unlink()
        time.sleep(0.1)


def _answer(name: str, snapshots: dict[str, tracemalloc.Snapshot]) -> dict[str, Any]:
    gc.collect()
    answer: dict[str, Any] = {"traced": tracemalloc.get_traced_memory()[0]}
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    if snapshots:
        before = snapshots[min(snapshots)]
        lines = snapshot.compare_to(before, "lineno")
        answer["lines"] = [
            [str(stat.traceback[0]), stat.size_diff, stat.count_diff] for stat in lines[:40]
        ]
        requests = _held_requests()
        seen: set[int] = set()
        totals: Counter[str] = Counter()
        sample = requests[:50]
        for request in sample:
            totals.update(_parts_of(request, seen))
        answer["requests"] = len(requests)
        answer["parts"] = {key: value / max(len(sample), 1) for key, value in totals.items()}
        answer["qos_delivered_map"] = _qos_bytes(requests)
    snapshots[name] = snapshot
    return answer


def run_traced_worker(celery_argv: list[str]) -> None:
    """The worker, traced: `celery` with these arguments, snapshots served on request."""
    tracemalloc.start(1)
    directory = Path(os.environ[_TRIGGER_DIR])
    threading.Thread(target=_serve_snapshots, args=(directory,), daemon=True).start()
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *celery_argv]
    celery_main()


# --- the parent: Redis, the worker, the messages, the report ----------------------------------


class TracedWorker(CleanEnvWorker):
    """The benchmark's worker, started through `run_traced_worker`."""

    def command(self) -> list[str]:
        celery = super().command()  # python -m celery ...
        return [sys.executable, "-m", "bench.held_message_memory", "--traced-worker", *celery[3:]]


def ask(directory: Path, name: str, timeout_s: float = 120.0) -> dict[str, Any]:
    (directory / f"{name}.ask").write_text("")
    answer = directory / f"{name}.json"
    give_up = time.monotonic() + timeout_s
    while not answer.exists():
        if time.monotonic() > give_up:
            raise TimeoutError(f"no snapshot {name} in {timeout_s} s")
        time.sleep(0.2)
    time.sleep(0.2)  # written in one call; let it land
    result: dict[str, Any] = json.loads(answer.read_text())
    if "error" in result:
        raise RuntimeError(f"the traced worker failed: {result['error']}")
    return result


def publish_polls(settings: Settings, n: int) -> None:
    """N poll messages with their facts, sent as a poll sends its next one."""
    from imageq.worker.app import create_app, send_actions
    from imageq.worker.messages import PollFacts, SchedulePoll

    app = create_app(settings)
    deadline = time.time() + COUNTDOWN_S + 180
    polls = [
        SchedulePoll(
            f"absent-{index:08d}-0000-4000-8000-000000000000",
            3,
            COUNTDOWN_S,
            PollFacts(f"task_{index:020d}", deadline, 2, time.time(), "high", "2K"),
        )
        for index in range(n)
    ]
    send_actions(app, polls, settings.worker)


def report(n: int, idle: dict[str, Any], held: dict[str, Any]) -> str:
    per = max(held.get("requests", n), 1)
    traced = held["traced"] - idle["traced"]
    out = [
        f"held messages: {held.get('requests')} (asked {n})",
        f"traced allocations per held message: {traced / per:,.0f} B",
        "(RSS: `python -m bench.held`, without tracing)",
        "",
        "parts of one held message (object walk, mean of 50):",
    ]
    parts = held.get("parts", {})
    for name, size in parts.items():
        out.append(f"  {size:8,.0f} B  {name}")
    qos = held.get("qos_delivered_map", 0) / per
    out.append(f"  {qos:8,.0f} B  kombu QoS: the _delivered map's slot")
    out.append(f"  {sum(parts.values()) + qos:8,.0f} B  total walked")
    out += ["", "traced bytes per held message by source line (top 25):"]
    for where, size, count in held.get("lines", [])[:25]:
        short = where.split("site-packages/")[-1]
        out.append(f"  {size / per:8,.0f} B {count / per:6.2f} blocks  {short}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--traced-worker"]:
        run_traced_worker(argv[1:])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="messages to hold (default 2000)")
    args = parser.parse_args(argv)
    with RedisServer() as server, TemporaryDirectory(prefix="imageq-heldmem-") as scratch:
        base = server.url().rsplit("/", 1)[0]
        parts = Round(
            redis_url=base,
            api_url="http://127.0.0.1:9",  # never called: the jobs do not exist
            webhook_url="http://127.0.0.1:9/hook",
            timing=PRODUCTION,
            processes=1,
            n=args.n,
            log_dir=Path(scratch),
        )
        values = imageq_values(parts, concurrency=32)
        settings = Settings(_env_file=None, **copy.deepcopy(values))
        env = settings_env(values) | {_TRIGGER_DIR: scratch}
        worker = TracedWorker(env, Path(scratch) / "worker.log", name="heldmem", loglevel="WARNING")
        workers = start_all([worker])
        broker = redis.Redis.from_url(settings.redis.broker_url)
        try:
            idle = ask(Path(scratch), "a-idle")
            publish_polls(settings, args.n)
            give_up = time.monotonic() + 120
            while broker.hlen("unacked") < args.n and time.monotonic() < give_up:
                time.sleep(0.2)
            held = ask(Path(scratch), "b-held")
        finally:
            broker.close()
            stop_all(workers)
    print(report(args.n, idle, held))


if __name__ == "__main__":
    main()
