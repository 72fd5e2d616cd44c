"""The floor: what each piece of a poll and of a job costs in CPU, per call, in one thread.

A poll is an API GET, a parse and a compare-and-set in the job store (and, in countdown mode,
a Celery publish of the next poll); a job adds a submit (an API POST), a webhook POST and the
compare-and-sets around them. This measures each piece alone, through imageq's own runtime
(`build_runtime`: its API client, job store and webhook sender, whichever HTTP library they
use), against the simulator (answering at once), a webhook receiver and a Redis of its own.
`bench.floor_model` turns the figures into a per-poll and a per-job floor; `bench.run`
measures the floor pieces at its start and end (`measure_floor`).

    python -m bench.floor [--calls 2000] [--reps 3]   # about 1 min; bench/results/floor/

The standalone command adds a raw `requests.Session` GET and a urllib3 pool GET beside
imageq's client, to show what the HTTP layer costs, and the poll's token check.

CPU is this thread's (`time.thread_time`): the simulator and Redis run in processes of their
own, the receiver in another thread, and are not counted. Each figure is the median over
`--reps` repetitions (min to max beside it), the pieces interleaved within each repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.floor_model import FLOOR_PIECES, LABELS
from bench.webhook_sink import ArrivalReceiver
from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.producers.jobs import build_job
from imageq.simulator.server import SimulatorProcess
from imageq.simulator.sim_config import SimConfig
from imageq.worker.app import create_app
from imageq.worker.domain.job import Job, JobFields
from imageq.worker.domain.params import validate_params
from imageq.worker.domain.status import JobStatus
from imageq.worker.domain.transitions import Transition, poll_on
from imageq.worker.messages import POLL_TASK, PollFacts
from imageq.worker.runtime import Runtime, build_runtime
from imageq.worker.webhooks.signing import build_webhook

API_KEY: Final = "sk-bench-floor-0123456789"
# A made-up signing secret: the floor signs one webhook, to send it again and again.
WEBHOOK_SECRET: Final = "whsec_Zmxvb3ItYmVuY2gtc2VjcmV0LTAxMjM0NTY3"  # noqa: S105 -- made up
# Only in the standalone command: what a raw HTTP GET costs, and the poll's token check.
EXTRA_PIECES: Final = ("get_requests", "get_urllib3", "poll_check")
WARM_UP_CALLS: Final = 20
Piece = Callable[[int], object]


def runtime_pieces(
    rt: Runtime, *, api_url: str, webhook_url: str, extras: bool = False
) -> dict[str, Piece]:
    """The floor's pieces, each a function of the call's number, through imageq's runtime
    (with `extras`, the standalone command's comparisons after them)."""
    params = validate_params("a lighthouse", aspect_ratio="1:1", resolution="1K", quality="high")
    task_id = rt.client.submit("floor-task", params).task_id
    request = urllib.request.Request(  # noqa: S310 -- the simulator, on loopback
        f"{api_url}/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 -- loopback
        body = answer.read()
    job = _submitted_job(rt, task_id)
    facts = PollFacts(remote_task_id=task_id, deadline_at=job.created_at + 3600, poll_count=0)
    hook = build_webhook(
        webhook_url,
        {"job_id": job.job_id, "status": "succeeded"},
        job_id=job.job_id,
        secrets=[WEBHOOK_SECRET],
        now=datetime.now(UTC),
    )
    app = create_app(rt.settings)
    queue = rt.settings.worker.poll_queue

    def compare_and_set(n: int) -> object:
        """The poll's checked write, as a poll that goes on makes it (token n to n + 1)."""
        moving = poll_on(job.job_id, token=n, facts=facts, now=time.time(), delay_s=3600.0,
                         remote_status="running")  # fmt: skip
        if not rt.store.apply(moving):
            raise RuntimeError(f"the floor's compare-and-set {n} was refused")
        return moving

    named: dict[str, Piece] = {
        "api_get": lambda n: rt.client.get_task(task_id),
        "api_post": lambda n: rt.client.submit(f"floor-{n}", params),
        "webhook_post": lambda n: rt.webhooks.send(hook),
        "cas": compare_and_set,
        "parse": lambda n: json.loads(body),
        "publish": lambda n: app.send_task(
            POLL_TASK, args=["floor", n], countdown=3600, queue=queue
        ),
    }
    if extras:
        named |= extra_pieces(rt, url=request.full_url, job_id=job.job_id)
    return named


def _submitted_job(rt: Runtime, task_id: str) -> Job:
    """A job record in the store, submitted as `task_id`, its poll token at 0."""
    job = build_job(rt.settings, "a lighthouse", aspect_ratio="1:1", resolution="1K",
                    now=time.time())  # fmt: skip
    rt.store.create(job)
    changes: JobFields = {
        "status": JobStatus.SUBMITTED,
        "remote_task_id": task_id,
        "poll_token": 0,
    }
    if not rt.store.apply(Transition(job.job_id, expect={"status": JobStatus.QUEUED},
                                     changes=changes)):  # fmt: skip
        raise RuntimeError("the floor's job could not be marked submitted")
    return job


def extra_pieces(rt: Runtime, *, url: str, job_id: str) -> dict[str, Piece]:
    """The standalone command's comparisons: raw HTTP GETs of a task, the poll's token check."""
    import requests  # only the comparison needs them
    import urllib3

    headers = {"Authorization": f"Bearer {API_KEY}"}
    session, pool = requests.Session(), urllib3.PoolManager(maxsize=1)
    return {
        "get_requests": lambda n: session.get(url, headers=headers, timeout=10),
        "get_urllib3": lambda n: pool.request("GET", url, headers=headers, timeout=10),
        "poll_check": lambda n: rt.store.poll_is_current(job_id, 0),
    }


@contextmanager
def floor_stage() -> Iterator[tuple[Runtime, str, str]]:
    """A Redis, the simulator (answering at once) and a receiver of their own, and imageq's
    runtime on them: (runtime, API URL, webhook URL)."""
    with (
        RedisServer() as redis_server,
        SimulatorProcess(SimConfig(api_key=API_KEY, latency="fixed:0")) as simulator,
        ArrivalReceiver() as receiver,
    ):
        settings = Settings(
            _env_file=None,
            api={"key": API_KEY, "base_url": simulator.base_url},
            redis={"broker_url": redis_server.url(0), "store_url": redis_server.url(1)},
            webhook={"allow_loopback": True},
        )
        yield build_runtime(settings), simulator.base_url, receiver.url


def cpu_us_per_call(piece: Piece, calls: int, start: int) -> float:
    """This thread's CPU per call, in microseconds, over `calls` calls."""
    before = time.thread_time()
    for n in range(start, start + calls):
        piece(n)
    return (time.thread_time() - before) / calls * 1e6


def measure_pieces(named: Mapping[str, Piece], *, calls: int, reps: int) -> dict[str, Any]:
    """Each piece `calls` times per repetition, interleaved: median, min and max CPU µs per
    call; the 1-minute load average before and after each repetition."""
    loadavg = [os.getloadavg()[0]]
    runs: dict[str, list[float]] = {}
    counters = dict.fromkeys(named, WARM_UP_CALLS)
    for piece in named.values():  # warm up: connections made, caches filled
        cpu_us_per_call(piece, WARM_UP_CALLS, 0)
    for _ in range(reps):
        for name, piece in named.items():
            runs.setdefault(name, []).append(cpu_us_per_call(piece, calls, counters[name]))
            counters[name] += calls
        loadavg.append(os.getloadavg()[0])
    return {
        "calls": calls,
        "reps": reps,
        "loadavg": [round(value, 2) for value in loadavg],
        "pieces": {
            name: {
                "median_us": statistics.median(values),
                "min_us": min(values),
                "max_us": max(values),
            }
            for name, values in runs.items()
        },
    }


def measure_floor(*, calls: int = 400, reps: int = 3, extras: bool = False) -> dict[str, Any]:
    """The floor's pieces (and with `extras` the comparisons), each `calls` x `reps` times,
    on a stage of their own: a few seconds at the defaults."""
    with floor_stage() as (rt, api_url, webhook_url):
        named = runtime_pieces(rt, api_url=api_url, webhook_url=webhook_url, extras=extras)
        return measure_pieces(named, calls=calls, reps=reps)


def render(results: Mapping[str, Any]) -> str:
    """The standalone command's report."""
    lines = [
        "# The floor: CPU per call of each piece of a poll and of a job",
        "",
        f"`python -m bench.floor --calls {results['calls']} --reps {results['reps']}`: one"
        " thread, the simulator answering at once in its own process, a receiver, a Redis of"
        " its own. 1-minute load average before and after each repetition:"
        f" {results['loadavg']}.",
        "",
        "| piece | CPU µs per call, median | min to max |",
        "|---|---:|---:|",
    ]
    for name in (*FLOOR_PIECES, *EXTRA_PIECES):
        figure = results["pieces"].get(name)
        if figure is not None:
            lines.append(
                f"| {LABELS[name]} | {figure['median_us']:.0f} | {figure['min_us']:.0f} to"
                f" {figure['max_us']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per piece and rep")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/floor"))
    args = parser.parse_args()
    results = measure_floor(calls=args.calls, reps=args.reps, extras=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "report.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
