"""What acknowledged writes cost per job: the job store with `wait_replicas` 1 against 0.

`python -m bench.wait_cost [--jobs N] [--pairs P]` starts a throwaway Redis master and one
replica on loopback and, for each pair, runs N jobs through the store writes one job makes
(create; the submit's claim, its send window, submitted; five polls; finished; the webhook's
claim and its mark), once with `WAIT 1` after the writes a failover must not lose
(`job_store.survives_failover`: six of the twelve) and once without. The order within a pair
alternates. It prints, per run, the wall time and the client's CPU time per job and the
master's CPU time per job (INFO cpu), the ratios on/off per pair (median, min and max) and
the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import redis

from imageq.devenv.redis_server import RedisServer
from imageq.worker.domain.job import Delivery, Job
from imageq.worker.domain.status import JobStatus
from imageq.worker.store.job_store import JobStore

PARAMS = {"prompt": "castle", "aspect_ratio": "1:1", "resolution": "1K", "quality": "high"}
POLLS = 5
REPLICATION = ("--repl-diskless-sync-delay", "0")


def one_job(store: JobStore, n: int, now: float) -> None:
    """The store writes of one job that succeeds after five polls and is notified once."""
    job_id = f"w-{n:07d}"
    store.create(Job(job_id, PARAMS, created_at=now), due_at=now)
    queued = {"status": JobStatus.QUEUED}
    store.update(job_id, expect=queued, changes={"submit_attempts": 1, "submit_lease_until": now})
    store.update(job_id, expect=queued, changes={"submit_sent_until": now + 5})
    store.update(
        job_id,
        expect=queued,
        changes={"status": JobStatus.SUBMITTED, "remote_task_id": f"t{n}", "poll_token": 1},
        due_at=now + 10,
    )
    for token in range(1, POLLS + 1):
        store.update(
            job_id,
            expect={"status": JobStatus.SUBMITTED, "poll_token": token},
            changes={"poll_token": token + 1, "poll_count": token, "next_poll_at": now + token},
            due_at=now + 10 + token,
        )
    store.update(
        job_id,
        expect={"status": JobStatus.SUBMITTED},
        changes={
            "status": JobStatus.SUCCEEDED,
            "finished_at": now,
            "webhook_state": Delivery.PENDING,
        },
        due_at=now,
    )
    pending = {"webhook_state": Delivery.PENDING}
    store.update(job_id, expect=pending, changes={"webhook_state": Delivery.SENDING}, due_at=now)
    store.update(
        job_id,
        expect={"webhook_state": Delivery.SENDING},
        changes={"webhook_state": Delivery.SENT},
        settled=True,
    )


def run(master: redis.Redis, *, jobs: int, wait_replicas: int) -> dict[str, float]:
    """One run from an empty database: WAITs, wall µs, client CPU µs and master CPU µs per
    job."""
    master.flushall()
    master.wait(1, 5000)  # the replica has the flush before the clock starts
    master.config_resetstat()
    store = JobStore(master, prefix="bench", ttl_s=86400, wait_replicas=wait_replicas)
    cpu_before = _server_cpu_s(master)
    now = time.time()
    started, client_started = time.perf_counter(), time.process_time()
    for n in range(jobs):
        one_job(store, n, now)
    wall_s = time.perf_counter() - started
    client_s = time.process_time() - client_started
    server_s = _server_cpu_s(master) - cpu_before
    waits = int(master.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
    return {
        "waits_per_job": waits / jobs,
        "wall_us_per_job": wall_s / jobs * 1e6,
        "client_cpu_us_per_job": client_s / jobs * 1e6,
        "master_cpu_us_per_job": server_s / jobs * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=4)
    options = parser.parse_args()
    print(f"loadavg before: {_loadavg()}  (cpus: {os.cpu_count()})")
    ratios: dict[str, list[float]] = {}
    with RedisServer(extra_args=REPLICATION) as primary:
        follow = ("--replicaof", "127.0.0.1", str(primary.port))
        with RedisServer(extra_args=(*REPLICATION, *follow)):
            master = redis.Redis.from_url(primary.url(0))
            while int(master.wait(1, 200)) < 1:  # until the replica is in sync
                master.set("bench:probe", 1)
            for pair in range(options.pairs):
                order = [1, 0] if pair % 2 == 0 else [0, 1]
                results = {n: run(master, jobs=options.jobs, wait_replicas=n) for n in order}
                for n in order:
                    shown = "  ".join(f"{k} {v:8.1f}" for k, v in results[n].items())
                    print(f"pair {pair + 1} WAIT {'on ' if n else 'off'}  {shown}")
                for key in list(results[1])[1:]:
                    ratios.setdefault(key, []).append(results[1][key] / results[0][key])
    for key, values in ratios.items():
        spread = f"min {min(values):.3f} max {max(values):.3f}"
        print(f"ratio on/off {key}: median {statistics.median(values):.3f} ({spread})")
    print(f"loadavg after: {_loadavg()}")


def _server_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


if __name__ == "__main__":
    main()
