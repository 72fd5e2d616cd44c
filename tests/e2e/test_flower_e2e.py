"""Flower shows the cluster: a worker started the README way (`imageq worker`) is listed by
Flower, alive by its heartbeats, and with task events on every task of a job is listed with
the job's id in its arguments; no secret shows anywhere (API key, webhook secret, the Redis
password).

A Redis of its own, with a password, so the session's worker cannot take these jobs and the
password has something to leak; Flower runs with `--enable_events=False`, so the tasks it shows
come from the worker's own setting, not from Flower switching events on.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer, free_port
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.worker.domain.status import JobStatus
from tests.conftest import API_KEY, WEBHOOK_SECRET, wait_for

pytest.importorskip("flower", reason="Flower comes with the `ops` extra: pip install '.[ops]'")

REDIS_PASSWORD = "redis-pw-flower-e2e-5f3c"
FLOWER_AUTH = ("imageq", "flower-e2e")
HOSTNAME = "flowertest@%h"
TIMEOUT = (2.0, 15.0)
JOBS = 6


class ReadmeWorker(WorkerProcess):
    """`imageq worker`, as the README runs a worker (the CLI adds its own Celery flags)."""

    def command(self) -> list[str]:
        imageq = str(Path(sys.executable).with_name("imageq"))
        return [imageq, "worker", "--loglevel=INFO", f"--hostname={HOSTNAME}"]


class Flower:
    """`celery -A imageq.worker.app flower` on a free loopback port, with basic auth."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        command = [
            sys.executable, "-m", "celery", "-A", "imageq.worker.app", "flower",
            "--address=127.0.0.1", f"--port={port}", "--enable_events=False",
            f"--basic_auth={':'.join(FLOWER_AUTH)}",
        ]  # fmt: skip
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def get(self, path: str) -> requests.Response:
        response = requests.get(f"{self.url}{path}", auth=FLOWER_AUTH, timeout=TIMEOUT)
        response.raise_for_status()
        return response

    def up(self) -> bool:
        assert self.process.poll() is None, "Flower exited"
        try:
            return requests.get(f"{self.url}/healthcheck", timeout=TIMEOUT).ok
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def cluster_values(
    settings_values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The session's settings on a password-protected Redis of this module's own, with task
    events on."""
    with RedisServer() as server:
        redis.Redis.from_url(server.url(0)).config_set("requirepass", REDIS_PASSWORD)
        locked = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}"
        values = copy.deepcopy(settings_values)
        values["redis"] = {"broker_url": f"{locked}/0", "store_url": f"{locked}/1"}
        values["observability"]["metrics_port"] = 0
        values["worker"]["task_events"] = True
        yield values


@pytest.fixture(scope="module")
def flower(
    cluster_values: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flower]:
    logs = tmp_path_factory.mktemp("flower")
    env = settings_env(cluster_values)
    with ReadmeWorker(env, logs / "worker.log"):
        server = Flower({**os.environ, **env}, logs / "flower.log")
        try:
            wait_for(server.up, timeout_s=30, what="Flower to answer")
            yield server
        finally:
            server.stop()


def listed_worker(flower: Flower) -> str | None:
    """The test worker's name in `/api/workers?refresh=1` (Flower inspects the workers)."""
    workers = flower.get("/api/workers?refresh=1").json()
    return next((name for name in workers if name.startswith("flowertest@")), None)


def test_flower_lists_the_worker_alive(flower: Flower) -> None:
    """`/api/workers` lists the worker with its tasks and queues; the dashboard, which goes by
    heartbeats, shows it online."""
    name = wait_for(lambda: listed_worker(flower), timeout_s=20, what="Flower to list the worker")
    worker = flower.get(f"/api/workers?workername={name}").json()[name]
    assert {"imageq.submit", "imageq.poll", "imageq.download"} <= set(worker["registered"])
    assert {"imageq.submit", "imageq.poll"} <= {queue["name"] for queue in worker["active_queues"]}

    def online() -> bool:
        dashboard = flower.get("/workers?json=1").json()["data"]
        return any(row["hostname"] == name and row["status"] is True for row in dashboard)

    wait_for(online, timeout_s=15, what="the dashboard to show the worker online")


def test_flower_lists_every_task_of_the_jobs_with_ids_and_no_secret(
    flower: Flower, cluster_values: dict[str, Any], receiver: WebhookReceiver
) -> None:
    """Every task of six jobs run together (submits and polls; the first download runs in the
    poll that finished its job) is listed as succeeded,
    with its job's id as its first argument (pool threads finishing tasks while the worker
    flushes its buffered events lost some in Celery 5.6.3); neither the tasks nor the worker
    pages hold a secret."""
    queue = ImageQueue(Settings(_env_file=None, **cluster_values))
    job_ids = [
        queue.enqueue(
            f"a walled garden, view {n}", aspect_ratio="3:4", resolution="1K",
            webhook_url=f"{receiver.base_url}/hooks/flower",
        )
        for n in range(JOBS)
    ]  # fmt: skip
    for job_id in job_ids:
        job = queue.wait(job_id, timeout_s=30)
        assert job.status is JobStatus.SUCCEEDED, job.error
    queue._app.close()

    def tasks_by_job() -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
        for task in flower.get("/api/tasks").json().values():
            for job_id in job_ids:
                if task["args"].startswith(f"['{job_id}'"):
                    found[job_id].append(task)
        return found

    def all_listed() -> dict[str, list[dict[str, Any]]] | None:
        found = tasks_by_job()
        wanted = {"imageq.submit", "imageq.poll"}
        listed = all(wanted <= {task["name"] for task in tasks} for tasks in found.values())
        return found if listed else None

    def all_succeeded() -> bool:
        states = [task["state"] for tasks in tasks_by_job().values() for task in tasks]
        return all(state == "SUCCESS" for state in states)

    found = wait_for(all_listed, timeout_s=20, what="Flower to list every job's tasks")
    # Events come in batches a moment apart: a task still short of SUCCESS after 10 s lost one.
    wait_for(all_succeeded, timeout_s=10, what="every task to show SUCCESS")
    for job_id, tasks in found.items():
        submit = next(task for task in tasks if task["name"] == "imageq.submit")
        assert submit["args"] == f"['{job_id}']"
        assert all(task["kwargs"] == "{}" for task in tasks)
    name = wait_for(lambda: listed_worker(flower), timeout_s=20, what="the worker")
    pages = [
        flower.get("/api/tasks").text,
        flower.get("/api/workers?refresh=1").text,
        flower.get("/workers?json=1").text,
        flower.get(f"/worker/{name}").text,  # the worker page shows its configuration
        *(flower.get(f"/api/task/info/{task['uuid']}").text for task in found[job_ids[0]]),
    ]
    for secret in (API_KEY, WEBHOOK_SECRET, REDIS_PASSWORD):
        assert not [page[:200] for page in pages if secret in page], "a secret shows in Flower"
    assert json.loads(pages[1])[name]["conf"]["worker_send_task_events"] is True
