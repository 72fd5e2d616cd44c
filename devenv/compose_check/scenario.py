"""The stack's scenario, step by step: the README's commands as written, jobs from the host,
webhooks, health, Flower, a worker container killed mid-run, `--scale worker=3`, the monitoring
profile, Redis's volume across down/up, and `down -v` leaving nothing."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
import urllib.request
from typing import Any, Final

import redis

from imageq.devenv.compose_check.stack import PROJECT, CheckSecrets, Ports, Stack, wait_for
from imageq.devenv.compose_check.stack_jobs import (
    Batch,
    enqueue,
    host_queue,
    once_problems,
    wait_finished,
    wait_for_started,
)

DEMO: Final = ("--profile", "demo")
MONITORING: Final = ("--profile", "monitoring")
HEALTHY_TIMEOUT_S: Final = 150.0
JOBS_TIMEOUT_S: Final = 180.0


class Scenario:
    """Runs the steps against one stack; `notes` collects what each found, `problems` what
    failed (the check fails if any)."""

    def __init__(self, stack: Stack, check: CheckSecrets, ports: Ports) -> None:
        self.stack = stack
        self.check = check
        self.ports = ports
        self.notes: list[str] = []
        self.problems: list[str] = []
        self._queue = host_queue(ports.redis, check)
        self._first: Batch | None = None

    def demo_up(self) -> None:
        """`--profile demo up -d`, two workers, every container healthy."""
        self.stack.compose(*DEMO, "up", "-d", "--scale", "worker=2")
        health = self.stack.wait_healthy(HEALTHY_TIMEOUT_S)
        self.notes.append(f"demo profile up, healthy: {', '.join(sorted(health))}")
        if len(self.stack.containers("worker")) != 2:
            self.problems.append("demo: not two worker containers")
        client = redis.Redis(port=self.ports.redis, decode_responses=True)
        aof = client.config_get("appendonly").get("appendonly")
        client.close()
        if aof != "yes":
            self.problems.append(f"Redis runs with appendonly {aof!r}, not yes")

    def jobs_and_webhooks(self) -> None:
        """Jobs enqueued on the host finish; each submitted once and its webhook received once."""
        batch = enqueue(self._queue, self.stack, "first", 20)
        start = time.monotonic()
        statuses = wait_finished(self._queue, batch, JOBS_TIMEOUT_S)
        self.notes.append(f"20 jobs from the host finished in {time.monotonic() - start:.1f} s")
        self.problems += once_problems(self.stack, batch, statuses)
        self._first = batch

    def health_in_container(self) -> None:
        """`imageq health` in a worker container: every check passes."""
        report = self.stack.exec_json("worker", "imageq", "health", "--json")
        failing = [item["name"] for item in report["checks"] if not item["ok"]]
        if not report["healthy"] or failing:
            self.problems.append(f"imageq health in a worker container: failing {failing}")
        else:
            self.notes.append("imageq health in a worker container: healthy")

    def flower_lists_workers(self) -> None:
        """Flower's /metrics shows every worker container's Celery node online."""
        self._wait_flower_sees(self.stack.containers("worker"))

    def kill_worker_mid_run(self) -> None:
        """SIGKILL one worker container while jobs are in flight: all still finish, once each."""
        batch = enqueue(self._queue, self.stack, "killed", 40)
        wait_for_started(self._queue, batch, 10, JOBS_TIMEOUT_S)
        victim = self.stack.containers("worker")[0]
        # SIGKILL from outside, as the OOM killer or a crash would end it: Docker sees the
        # container die on its own, so its restart policy applies (`docker kill` counts as
        # stopping it by hand, and unless-stopped would leave it down).
        os.kill(self.stack.inspect(victim)["State"]["Pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        statuses = wait_finished(self._queue, batch, JOBS_TIMEOUT_S)
        took = time.monotonic() - killed_at
        state = self.stack.inspect(victim)["State"]
        if not state["Running"]:
            self.problems.append("the killed worker container was not restarted")
        self.notes.append(
            f"a worker container SIGKILLed with 40 jobs in flight: restarted by Docker"
            f" {state['Running']}, all jobs terminal {took:.1f} s after the kill"
        )
        self.problems += once_problems(self.stack, batch, statuses)

    def scale_to_three(self) -> None:
        """The README's `up -d --scale worker=3`: three workers, all seen by Flower."""
        self.stack.compose("up", "-d", "--scale", "worker=3")
        workers = self.stack.containers("worker")
        if len(workers) != 3:
            self.problems.append(f"--scale worker=3 runs {len(workers)} workers")
        self._wait_flower_sees(workers)

    def monitoring(self) -> None:
        """The monitoring profile: Prometheus (Debian's, in the local image) scrapes every
        worker replica and the cluster exporter."""
        self.stack.compose(*MONITORING, "up", "-d", "--scale", "worker=3")
        url = f"http://127.0.0.1:{self.ports.prometheus}/api/v1/targets"
        up: dict[str, int] = {}

        def all_up() -> bool:
            up.clear()
            try:
                targets = _get_json(url)["data"]["activeTargets"]
            except OSError:
                return False
            for target in targets:
                if target["health"] == "up":
                    job = target["labels"]["job"]
                    up[job] = up.get(job, 0) + 1
            return up.get("imageq-worker") == 3 and up.get("imageq-exporter") == 1

        took = wait_for(all_up, 120, lambda: f"targets up per job: {up}")
        self.notes.append(f"Prometheus scrapes 3 workers and the exporter ({took:.0f} s): {up}")
        self.problems += self._every_container_checked_and_loopback_only()

    def _every_container_checked_and_loopback_only(self) -> list[str]:
        """Each running container has a health check, and publishes ports on 127.0.0.1 only."""
        problems = []
        for container in self.stack.containers():
            state = self.stack.inspect(container)
            name = state["Name"].lstrip("/")
            if not state["State"].get("Health"):
                problems.append(f"{name} has no health check")
            for bindings in (state["NetworkSettings"]["Ports"] or {}).values():
                if wide := [b["HostIp"] for b in bindings or () if b["HostIp"] != "127.0.0.1"]:
                    problems.append(f"{name} publishes a port on {wide}")
        return problems

    def redis_survives_down_up(self) -> None:
        """A value and the jobs written before `down` are there after `up` (the named volume
        and AOF)."""
        marker = secrets.token_hex(8)
        client = redis.Redis(port=self.ports.redis)
        client.set("imageq-check:marker", marker)
        client.close()
        self.stack.compose(*DEMO, *MONITORING, "down")
        volumes = self.stack.docker("volume", "ls", "-q").split()
        if f"{PROJECT}_redis-data" not in volumes:
            self.problems.append(f"the redis-data volume is gone after down: {volumes}")
        self.stack.compose(*DEMO, "up", "-d")
        client = redis.Redis(port=self.ports.redis)
        wait_for(lambda: _answers(client), 60, lambda: "Redis does not answer after up")
        kept = client.get("imageq-check:marker")
        client.close()
        first = self._first.paths if self._first else {}
        lost = [job for job in first if not self._queue.get(job).is_terminal]
        if kept != marker.encode() or lost:
            self.problems.append(f"after down/up: marker kept {kept!r}, jobs lost {len(lost)}")
        else:
            self.notes.append(f"down/up: Redis kept its data ({len(first)} job records checked)")

    def logs_hold_no_secret(self) -> None:
        """No container's log holds the API key or the webhook secret."""
        logs = self.stack.compose(*DEMO, *MONITORING, "logs", "--no-color")
        for name, value in (
            ("API key", self.check.api_key),
            ("webhook secret", self.check.webhook_secret),
        ):
            if value in logs:
                self.problems.append(f"the {name} appears in the containers' logs")

    def down(self) -> None:
        """`down -v`: every container stops on SIGTERM, and no container, network or volume
        of the project is left."""
        names = {c: self.stack.inspect(c)["Name"].lstrip("/") for c in self.stack.containers()}
        start = time.monotonic()
        self.stack.compose(*DEMO, *MONITORING, "down", "-v", "--remove-orphans")
        self.notes.append(f"down -v took {time.monotonic() - start:.1f} s")
        if forced := sorted(names[c] for c in self.stack.daemon.forced_stops() if c in names):
            self.problems.append(f"containers that ignored SIGTERM (SIGKILLed): {forced}")
        left = {
            "containers": self.stack.docker("ps", "-aq").split(),
            "volumes": self.stack.docker("volume", "ls", "-q").split(),
            "networks": [
                name
                for name in self.stack.docker("network", "ls", "--format", "{{.Name}}").split()
                if name not in ("host", "none", "bridge")
            ],
        }
        if any(left.values()):
            self.problems.append(f"left after down -v: {left}")

    def _wait_flower_sees(self, containers: list[str]) -> None:
        nodes = {f"celery@{self.stack.inspect(c)['Config']['Hostname']}" for c in containers}
        url = f"http://127.0.0.1:{self.ports.flower}/metrics"
        online: set[str] = set()

        def sees_all() -> bool:
            online.clear()
            try:
                text = urllib.request.urlopen(url, timeout=10).read().decode()
            except OSError:
                return False
            online.update(re.findall(r'flower_worker_online\{worker="([^"]+)"\} 1\.0', text))
            return nodes <= online

        took = wait_for(sees_all, 90, lambda: f"Flower lists {sorted(online)}, not {sorted(nodes)}")
        self.notes.append(f"Flower lists all {len(nodes)} workers online ({took:.0f} s)")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (127.0.0.1 only)
        return json.loads(answer.read())


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
