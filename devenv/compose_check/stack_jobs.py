"""Jobs pushed through the stack from the host, and what must hold for them: each finished,
submitted to the API once and notified once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from imageq.config import Settings
from imageq.devenv.compose_check.daemon import ADDRESS_POOL
from imageq.devenv.compose_check.stack import RECEIVER_PORT, CheckSecrets, Stack, wait_for
from imageq.producers.api import ImageQueue
from imageq.worker.domain.status import JobStatus


def host_queue(redis_port: int, check: CheckSecrets) -> ImageQueue:
    """A producer on the host, through Redis's port published on 127.0.0.1."""
    redis = f"redis://127.0.0.1:{redis_port}"
    settings = Settings(
        _env_file=None,
        redis={"broker_url": f"{redis}/0", "store_url": f"{redis}/1"},
        webhook={"secrets": check.webhook_secret, "allowed_networks": ADDRESS_POOL},
    )
    return ImageQueue(settings)


@dataclass(frozen=True)
class Batch:
    """Jobs enqueued together: job id -> the receiver path its webhook goes to."""

    tag: str
    paths: dict[str, str]


def enqueue(queue: ImageQueue, stack: Stack, tag: str, count: int) -> Batch:
    """`count` jobs, each with a webhook to the receiver on the compose network (by address:
    the host resolves no compose name, and the guard checks the URL here at enqueue)."""
    receiver = stack.ip_of(stack.containers("webhook-receiver")[0])
    paths = {}
    for index in range(count):
        path = f"/{tag}/{index}"
        job_id = queue.enqueue(
            f"compose check {tag} {index}: a lighthouse at dusk",
            aspect_ratio="1:1",
            resolution="1K",
            webhook_url=f"http://{receiver}:{RECEIVER_PORT}{path}",
        )
        paths[job_id] = path
    return Batch(tag, paths)


def wait_finished(queue: ImageQueue, batch: Batch, timeout_s: float) -> dict[str, str]:
    """Wait until every job is terminal; job id -> status."""
    statuses: dict[str, str] = {}
    terminal: set[str] = set()

    def all_terminal() -> bool:
        for job_id in batch.paths.keys() - terminal:
            job = queue.get(job_id)
            statuses[job_id] = job.status.value
            if job.is_terminal:
                terminal.add(job_id)
        return len(terminal) == len(batch.paths)

    wait_for(all_terminal, timeout_s, lambda: f"statuses {dict(Counter(statuses.values()))}")
    return statuses


def count_started(queue: ImageQueue, batch: Batch) -> int:
    """How many of the batch's jobs have left the queue (submitted or finished)."""
    return sum(queue.get(job_id).status != JobStatus.QUEUED for job_id in batch.paths)


def once_problems(stack: Stack, batch: Batch, statuses: dict[str, str]) -> list[str]:
    """What breaks "every job finished, submitted once, notified once", one line each."""
    problems = []
    if failed := Counter(s for s in statuses.values() if s != JobStatus.SUCCEEDED.value):
        problems.append(f"{batch.tag}: jobs not succeeded: {dict(failed)}")
    stats = stack.fetch_json("simulator", "http://127.0.0.1:8080/_sim/stats")
    accepted = stats["accepted_submits_by_out_task_id"]
    if wrong := {job: accepted.get(job, 0) for job in batch.paths if accepted.get(job, 0) != 1}:
        problems.append(f"{batch.tag}: accepted submits per job not 1: {wrong}")
    received = stack.fetch_json("webhook-receiver", f"http://127.0.0.1:{RECEIVER_PORT}/received")
    per_path = Counter(item["path"] for item in received)
    if wrong := {p: per_path[p] for p in batch.paths.values() if per_path[p] != 1}:
        problems.append(f"{batch.tag}: webhook deliveries per job not 1: {wrong}")
    return problems


def wait_for_started(queue: ImageQueue, batch: Batch, at_least: int, timeout_s: float) -> float:
    """Wait until `at_least` jobs of the batch are past the queue; the seconds it took."""
    seen = [0]

    def enough() -> bool:
        seen[0] = count_started(queue, batch)
        return seen[0] >= at_least

    return wait_for(enough, timeout_s, lambda: f"{seen[0]} of {len(batch.paths)} started")
