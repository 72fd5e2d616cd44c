"""What the write of a poll that goes on costs: the general write (one JSON document, built with
`json.dumps` and decoded by `cjson` in lua/write.lua) against its own script (lua/poll_on.lua,
plain arguments), on the same transition, in CPU per write on both sides of the connection.

    python -m bench.poll_write [--writes 5000] [--reps 5]   # bench/results/poll_write/

Client side: this thread's CPU (`time.thread_time`) per write, building the arguments included.
Redis side: the server's own accounting of the script calls (`INFO commandstats`, `evalsha`
microseconds per call, stats reset before each block) and its whole process CPU (`INFO cpu`,
user + sys, which adds reading and answering the request). A Redis of its own, one thread,
the two writes in alternating blocks, the order swapped every repetition; each ratio is
new / old within one repetition, reported as the median and the spread (min to max).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import redis

from imageq.devenv.redis_server import RedisServer
from imageq.worker.domain import transitions
from imageq.worker.domain.job import Job, JobFields
from imageq.worker.domain.status import JobStatus
from imageq.worker.messages import PollFacts
from imageq.worker.store.job_store import JobStore

WAYS: Final = ("general write.lua", "own poll_on.lua")


def _prepare(store: JobStore, job_id: str, facts: PollFacts) -> None:
    job = Job(job_id=job_id, params={"prompt": "a lighthouse"}, created_at=time.time())
    store.create(job, due_at=time.time())
    changes: JobFields = {
        "status": JobStatus.SUBMITTED,
        "remote_task_id": facts.remote_task_id,
        "deadline_at": facts.deadline_at,
        "poll_token": 1,
    }
    store.update(job_id, expect={}, changes=changes)


def _writer(store: JobStore, way: str, job_id: str, facts: PollFacts) -> Callable[[int], object]:
    """One write of `way`, as a function of the token the job holds (1, 2, ...)."""
    write = store.apply if way == WAYS[0] else store.hand_on_poll

    def one(token: int) -> object:
        moving = transitions.poll_on(
            job_id,
            token=token,
            facts=facts,
            now=time.time(),
            delay_s=4.0,
            remote_status="running",
        )
        applied = write(moving)
        assert applied, "the benchmark's own write was refused"
        return applied

    return one


def _block(
    client: redis.Redis, write: Callable[[int], object], first: int, writes: int
) -> dict[str, float]:
    client.config_resetstat()
    server_before = _server_cpu_s(client)
    before = time.thread_time()
    for token in range(first, first + writes):
        write(token)
    client_us = (time.thread_time() - before) / writes * 1e6
    server_us = (_server_cpu_s(client) - server_before) / writes * 1e6
    stats: Any = client.info("commandstats")
    script_us = float(stats["cmdstat_evalsha"]["usec_per_call"])
    return {"client_us": client_us, "script_us": script_us, "server_us": server_us}


def _server_cpu_s(client: redis.Redis) -> float:
    cpu: Any = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def measure(writes: int, reps: int) -> dict[str, Any]:
    loadavg = [os.getloadavg()[0]]
    runs: list[dict[str, dict[str, float]]] = []
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url(1))
        store = JobStore(client, prefix="bench", ttl_s=3600)
        facts = PollFacts("task-1", time.time() + 3600, 0)
        writers: dict[str, Callable[[int], object]] = {}
        tokens: dict[str, int] = {}
        for n, way in enumerate(WAYS):
            _prepare(store, f"job-{n}", facts)
            writers[way] = _writer(store, way, f"job-{n}", facts)
            tokens[way] = 1
        for way in WAYS:  # warm up: scripts loaded, connection made
            _block(client, writers[way], tokens[way], 200)
            tokens[way] += 200
        for rep in range(reps):
            order = WAYS if rep % 2 == 0 else WAYS[::-1]
            run = {}
            for way in order:
                run[way] = _block(client, writers[way], tokens[way], writes)
                tokens[way] += writes
            runs.append(run)
            loadavg.append(os.getloadavg()[0])
        client.close()
    measures = ("client_us", "script_us", "server_us")
    summary = {}
    for key in measures:
        old = [run[WAYS[0]][key] for run in runs]
        new = [run[WAYS[1]][key] for run in runs]
        ratios = [b / a for a, b in zip(old, new, strict=True)]
        summary[key] = {
            "old_median": statistics.median(old),
            "new_median": statistics.median(new),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return {
        "writes": writes,
        "reps": reps,
        "loadavg": [round(value, 2) for value in loadavg],
        "runs": runs,
        "summary": summary,
    }


LABELS: Final = {
    "client_us": "client: this thread's CPU per write",
    "script_us": "Redis: `evalsha` µs per call (commandstats)",
    "server_us": "Redis: whole process CPU per write",
}


def render(results: dict[str, Any]) -> str:
    lines = [
        "# The write of a poll that goes on: general script against its own",
        "",
        f"`python -m bench.poll_write --writes {results['writes']} --reps {results['reps']}`:"
        " one thread, a Redis of its own, the two writes in alternating blocks. 1-minute load"
        f" average before and after each repetition: {results['loadavg']}.",
        "",
        "| CPU per write | general write.lua, µs | own poll_on.lua, µs | ratio own / general,"
        " median (min to max) |",
        "|---|---:|---:|---:|",
    ]
    for key, figure in results["summary"].items():
        lines.append(
            f"| {LABELS[key]} | {figure['old_median']:.1f} | {figure['new_median']:.1f} |"
            f" {figure['ratio_median']:.2f} ({figure['ratio_min']:.2f} to"
            f" {figure['ratio_max']:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=5000, help="writes per block")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/poll_write"))
    args = parser.parse_args()
    results = measure(args.writes, args.reps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
