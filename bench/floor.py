"""The floor: what each piece of a poll costs in CPU, per call, in one thread of one process.

A poll is an API GET, a parse, a compare-and-set in the job store and (in countdown mode) a
Celery publish of the next poll; a job adds a submit (an API POST). This measures each piece
alone, with the client imageq uses, against the simulator (answering at once) and a Redis of
its own, so a mode's CPU per job can be read as a multiple of what its parts cost at least.
A raw `requests.Session` GET and a urllib3 pool GET stand beside imageq's client, to show
what the HTTP layer costs.

    python -m bench.floor [--calls 2000] [--reps 3]   # about 1 min; bench/results/floor/

CPU is this thread's (`time.thread_time`): the simulator and Redis run in processes of their
own and are not counted. Each figure is the median over `--reps` repetitions (min to max
beside it), the pieces interleaved within each repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import requests
import urllib3

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.producers.jobs import build_job
from imageq.simulator.server import SimulatorProcess
from imageq.simulator.sim_config import SimConfig
from imageq.worker.app import create_app
from imageq.worker.domain.params import validate_params
from imageq.worker.domain.transitions import Transition
from imageq.worker.messages import POLL_TASK
from imageq.worker.runtime import connect_store
from imageq.worker.upstream.client import ApiClient

API_KEY: Final = "sk-bench-floor-0123456789"
Piece = Callable[[int], object]


def pieces(settings: Settings, api_url: str) -> dict[str, Piece]:
    """Each piece as a function of the call's number, ready to run (one task exists)."""
    client = ApiClient(settings.api)
    params = validate_params("a lighthouse", aspect_ratio="1:1", resolution="1K", quality="high")
    task_id = client.submit("floor-task", params).task_id
    task_url = f"{api_url}/v1/tasks/{task_id}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    session = requests.Session()
    pool = urllib3.PoolManager(maxsize=1)
    answer = session.get(task_url, headers=headers, timeout=10).content

    store = connect_store(settings)
    job = build_job(settings, "a lighthouse", aspect_ratio="1:1", resolution="1K", now=time.time())
    store.create(job)
    app = create_app(settings)
    queue = settings.worker.poll_queue

    def compare_and_set(n: int) -> object:
        return store.apply(
            Transition(job.job_id, expect={"poll_token": n}, changes={"poll_token": n + 1})
        )

    return {
        "API GET (imageq's client)": lambda n: client.get_task(task_id),
        "API POST submit (imageq's client)": lambda n: client.submit(f"floor-{n}", params),
        "GET, requests.Session": lambda n: session.get(task_url, headers=headers, timeout=10),
        "GET, urllib3 pool": lambda n: pool.request("GET", task_url, headers=headers, timeout=10),
        "poll check (HMGET)": lambda n: store.poll_is_current(job.job_id, 0),
        "compare-and-set (Lua)": compare_and_set,
        "json.loads of an answer": lambda n: json.loads(answer),
        "Celery publish with a countdown": lambda n: app.send_task(
            POLL_TASK, args=["floor", n], countdown=3600, queue=queue
        ),
    }


def cpu_us_per_call(piece: Piece, calls: int, start: int) -> float:
    """This thread's CPU per call, in microseconds, over `calls` calls."""
    before = time.thread_time()
    for n in range(start, start + calls):
        piece(n)
    return (time.thread_time() - before) / calls * 1e6


def measure(calls: int, reps: int) -> dict[str, object]:
    loadavg = [os.getloadavg()]
    runs: dict[str, list[float]] = {}
    with (
        RedisServer() as redis_server,
        SimulatorProcess(SimConfig(api_key=API_KEY, latency="fixed:0")) as simulator,
    ):
        settings = Settings(
            _env_file=None,
            api={"key": API_KEY, "base_url": simulator.base_url},
            redis={"broker_url": redis_server.url(0), "store_url": redis_server.url(1)},
            webhook={"allow_loopback": True},
        )
        named = pieces(settings, simulator.base_url)
        counters = dict.fromkeys(named, 0)
        for name, piece in named.items():  # warm up: connections made, caches filled
            cpu_us_per_call(piece, 20, 0)
            counters[name] = 20
        for _ in range(reps):
            for name, piece in named.items():
                runs.setdefault(name, []).append(cpu_us_per_call(piece, calls, counters[name]))
                counters[name] += calls
            loadavg.append(os.getloadavg())
    return {
        "calls": calls,
        "reps": reps,
        "loadavg": [round(value, 2) for sample in loadavg for value in sample[:1]],
        "pieces": {
            name: {
                "median_us": statistics.median(values),
                "min_us": min(values),
                "max_us": max(values),
            }
            for name, values in runs.items()
        },
    }


def render(results: dict[str, object]) -> str:
    pieces_ = results["pieces"]
    assert isinstance(pieces_, dict)
    lines = [
        "# The floor: CPU per call of each piece of a poll",
        "",
        f"`python -m bench.floor --calls {results['calls']} --reps {results['reps']}`: one"
        " thread, the simulator answering at once in its own process, a Redis of its own."
        f" 1-minute load average before and after each repetition: {results['loadavg']}.",
        "",
        "| piece | CPU µs per call, median | min to max |",
        "|---|---:|---:|",
    ]
    for name, figure in pieces_.items():
        lines.append(
            f"| {name} | {figure['median_us']:.0f} | {figure['min_us']:.0f} to"
            f" {figure['max_us']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per piece and rep")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/floor"))
    args = parser.parse_args()
    results = measure(args.calls, args.reps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
