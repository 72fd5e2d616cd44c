"""What the listing indexes cost per job: Redis memory and the write script's CPU.

`python -m bench.index_cost [--jobs N] [--pairs P]` starts a throwaway Redis on loopback and,
for each pair, runs N jobs of one batch through a job's usual status writes (create, submitted,
succeeded) twice: with the store's write script as shipped, and with the same script less its
index block (lua/write.lua, "The listing indexes"). The order within a pair alternates. It
prints, per run, the memory used after the run (INFO memory, from an empty database) and the
write script's time per call (INFO commandstats, evalsha), and the with/without ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from importlib import resources
from pathlib import Path

import redis

from imageq.devenv.redis_server import RedisServer
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.store.job_store import JobStore

_MARK = "-- The listing indexes"
_NEXT = "-- Fields set back to their default"
PARAMS = {"prompt": "castle", "aspect_ratio": "1:1", "resolution": "1K", "quality": "high"}


def script_without_indexes() -> str:
    text = resources.files("imageq.worker.store").joinpath("lua", "write.lua").read_text()
    return text[: text.index(_MARK)] + text[text.index(_NEXT) :]


def run(client: redis.Redis, *, jobs: int, indexed: bool) -> dict[str, float]:
    """One run from an empty database: bytes used per job, and µs per write-script call."""
    client.flushall()
    client.config_resetstat()
    base = int(client.info("memory")["used_memory"])
    store = JobStore(client, prefix="bench", ttl_s=7 * 86400)
    if not indexed:
        store._write = client.register_script(script_without_indexes())
    now = time.time()
    started = time.perf_counter()
    for n in range(jobs):
        job_id = f"b1-{n:06d}"
        store.create(Job(job_id, PARAMS, created_at=now, batch_id="b1"), due_at=now)
        store.update(
            job_id,
            expect={"status": JobStatus.QUEUED},
            changes={"status": JobStatus.SUBMITTED, "remote_task_id": f"t{n}"},
        )
        store.update(
            job_id,
            expect={"status": JobStatus.SUBMITTED},
            changes={"status": JobStatus.SUCCEEDED, "finished_at": now + 1},
            settled=True,
        )
    wall_s = time.perf_counter() - started
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    index_bytes = sum(int(client.memory_usage(key) or 0) for key in client.scan_iter("bench:idx:*"))
    return {
        "bytes_per_job": (int(client.info("memory")["used_memory"]) - base) / jobs,
        "index_bytes_per_job": index_bytes / jobs,
        "usec_per_call": float(stats.get("usec_per_call", 0.0)),
        "wall_us_per_job": wall_s / jobs * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=4)
    options = parser.parse_args()
    print(f"loadavg before: {_loadavg()}  (cpus: {os.cpu_count()})")
    ratios: dict[str, list[float]] = {
        "bytes_per_job": [],
        "usec_per_call": [],
        "wall_us_per_job": [],
    }
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url(0))
        for pair in range(options.pairs):
            order = [True, False] if pair % 2 == 0 else [False, True]
            results = {
                indexed: run(client, jobs=options.jobs, indexed=indexed) for indexed in order
            }
            for indexed in order:
                shown = "  ".join(f"{k} {v:8.1f}" for k, v in results[indexed].items())
                print(f"pair {pair + 1} {'with   ' if indexed else 'without'}  {shown}")
            for key in ratios:
                ratios[key].append(results[True][key] / results[False][key])
    for key, values in ratios.items():
        spread = f"min {min(values):.3f} max {max(values):.3f}"
        print(f"ratio with/without {key}: median {statistics.median(values):.3f} ({spread})")
    print(f"loadavg after: {_loadavg()}")


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


if __name__ == "__main__":
    main()
