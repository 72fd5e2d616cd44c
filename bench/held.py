"""What holding countdown messages costs a worker: CPU and RSS per message while none is due.

    python -m bench.held [--n 2000] [--window 30]

Starts a Redis of its own and one imageq worker (threads), measures the worker's CPU rate and
RSS over `--window` seconds idle, then publishes N poll messages due in ten minutes (for jobs
that do not exist, so nothing else happens), waits until the worker has fetched them all, and
measures again. Prints both and the difference per held message.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import redis

from bench import procfs
from bench.designs import PRODUCTION, CleanEnvWorker, Round, imageq_values, start_all, stop_all
from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer
from imageq.devenv.worker_process import settings_env
from imageq.worker.app import create_app
from imageq.worker.messages import PollFacts, SchedulePoll, message

# Far enough that none comes due while measured (with facts, a due one would call the API).
COUNTDOWN_S = 600.0


def sample(pids: Callable[[], list[int]], window_s: float) -> tuple[float, int]:
    """CPU-seconds per second over the window, and RSS (bytes) at its end."""
    cpu, started = procfs.cpu_seconds(pids()), time.monotonic()
    time.sleep(window_s)
    rate = (procfs.cpu_seconds(pids()) - cpu) / (time.monotonic() - started)
    return rate, procfs.rss_bytes(pids())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="messages to hold (default 2000)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per sample")
    args = parser.parse_args(argv)
    with RedisServer() as server, TemporaryDirectory(prefix="imageq-held-") as scratch:
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
        worker = CleanEnvWorker(
            settings_env(values), Path(scratch) / "worker.log", name="held", loglevel="INFO"
        )
        workers = start_all([worker])
        broker = redis.Redis.from_url(settings.redis.broker_url)
        try:

            def pids() -> list[int]:
                return procfs.tree(worker.pid)

            idle_cpu, idle_rss = sample(pids, args.window)
            app = create_app(settings)
            with app.producer_or_acquire() as producer:
                for index in range(args.n):
                    # As the worker sends them: with the job's facts (worker/steps/poll.py).
                    facts = PollFacts(f"task-{index}", time.time() + COUNTDOWN_S + 180, 0)
                    poll = SchedulePoll(f"absent-{index}", 1, COUNTDOWN_S, facts)
                    name, task_args, options = message(poll, settings.worker)
                    app.send_task(name, args=task_args, producer=producer, **options)
            deadline = time.monotonic() + 60
            while broker.hlen("unacked") < args.n and time.monotonic() < deadline:
                time.sleep(0.2)
            held = int(broker.hlen("unacked"))
            held_cpu, held_rss = sample(pids, args.window)
        finally:
            broker.close()
            stop_all(workers)
    print(f"idle:            {idle_cpu * 1000:.2f} ms CPU per s, RSS {idle_rss / 2**20:.1f} MiB")
    print(f"holding {held:,}: {held_cpu * 1000:.2f} ms CPU per s, RSS {held_rss / 2**20:.1f} MiB")
    print(
        f"per held message: {(held_cpu - idle_cpu) * 1e6 / held:.2f} µs CPU per s, "
        f"{(held_rss - idle_rss) / held / 1024:.2f} KiB RSS"
    )


if __name__ == "__main__":
    main()
