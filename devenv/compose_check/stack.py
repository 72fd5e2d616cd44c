"""The compose project the check runs: a copy of the repository in a folder of its own (so a
developer's `.env` never reaches it), with the check's `.env` and `docker-compose.override.yml`
beside the compose file, so the README's commands run there exactly as written."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from imageq.devenv.compose_check.daemon import ADDRESS_POOL, COMPOSE, DOCKER, Daemon

# The project is named after its folder (the compose file sets no `name:`), as for users.
PROJECT: Final = "imageq"
RECEIVER_PORT: Final = 8090
# docker-compose.override.yml: what the check adds to the users' file. Redis published on the
# host's loopback for the producers the check runs there, a webhook receiver on the compose
# network, and the simulator fast and holding the check's own key (compose fills ${...} from
# .env, as it does for the file it overrides).
OVERRIDE: Final = f"""\
services:
  redis:
    ports: ["127.0.0.1:${{CHECK_REDIS_PORT}}:6379"]
  simulator:
    command: [imageq-simulator, --host, 0.0.0.0, --port, "8080",
              --api-key, "${{IMAGEQ_API__KEY}}", --latency, "uniform:2,4"]
  webhook-receiver:
    image: imageq:latest
    init: true
    command: [python, -m, imageq.devenv.compose_check.receiver, "{RECEIVER_PORT}"]
    healthcheck:
      test: [CMD, python, -c, "import urllib.request as r;
             r.urlopen('http://127.0.0.1:{RECEIVER_PORT}/received', timeout=5)"]
      interval: 5s
"""


@dataclass(frozen=True)
class CheckSecrets:
    """Made afresh for each run, so finding one anywhere can only mean it leaked there."""

    api_key: str
    webhook_secret: str

    @classmethod
    def new(cls) -> CheckSecrets:
        return cls(
            api_key=f"sk-compose-check-{secrets.token_hex(16)}",
            webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        )


@dataclass(frozen=True)
class Ports:
    """Host ports on 127.0.0.1, free when the run began."""

    redis: int
    flower: int
    prometheus: int

    @classmethod
    def free(cls) -> Ports:
        return cls(redis=_free_port(), flower=_free_port(), prometheus=_free_port())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def copy_project(source: Path, target: Path) -> None:
    """The repository's tracked and unignored files (links kept as links), nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        origin = source / name
        if not origin.exists() and not origin.is_symlink():
            continue  # deleted in the work tree, not yet in git
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, destination, follow_symlinks=False)


def write_settings(
    folder: Path, check: CheckSecrets, ports: Ports, images: Mapping[str, str]
) -> None:
    """The check's `.env` (short timings, its secrets, its images and ports) and override."""
    values = {
        "IMAGEQ_API__KEY": check.api_key,
        "IMAGEQ_WEBHOOK__SECRETS": check.webhook_secret,
        # The receiver's address on the compose network, from the daemon's own pool.
        "IMAGEQ_WEBHOOK__ALLOWED_NETWORKS": ADDRESS_POOL,
        "IMAGEQ_POLLING__FIRST_DELAY_S": "1",
        "IMAGEQ_POLLING__INTERVAL_S": "1",
        "IMAGEQ_POLLING__JITTER_S": "0.2",
        "IMAGEQ_POLLING__ADAPTIVE": "false",
        # A SIGKILLed worker's held messages come back after this (plus kombu's sweep); it
        # must stay twice the longest countdown, hence the shorter backoff cap.
        "IMAGEQ_WORKER__VISIBILITY_TIMEOUT_S": "30",
        "IMAGEQ_WORKER__MAX_COUNTDOWN_S": "10",
        "IMAGEQ_RETRY__MAX_DELAY_S": "10",
        "CHECK_REDIS_PORT": str(ports.redis),
        "FLOWER_PORT": str(ports.flower),
        "PROMETHEUS_PORT": str(ports.prometheus),
        **images,
    }
    (folder / ".env").write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    (folder / "docker-compose.override.yml").write_text(OVERRIDE)


class Stack:
    """docker-compose in the project folder, against the check's daemon."""

    def __init__(self, daemon: Daemon, folder: Path) -> None:
        self.daemon = daemon
        self.folder = folder

    def compose(self, *args: str, timeout_s: float = 600.0) -> str:
        """`docker-compose ARGS` in the project folder; its stdout."""
        result = self.daemon.run([COMPOSE, *args], cwd=self.folder, timeout_s=timeout_s)
        return result.stdout

    def docker(self, *args: str, timeout_s: float = 120.0) -> str:
        return self.daemon.run([DOCKER, *args], timeout_s=timeout_s).stdout

    def containers(self, service: str | None = None) -> list[str]:
        """Ids of the service's containers (of every service without one)."""
        return self.compose("ps", "-q", *([service] if service else [])).split()

    def inspect(self, container: str) -> dict[str, Any]:
        loaded: list[dict[str, Any]] = json.loads(self.docker("inspect", container))
        return loaded[0]

    def ip_of(self, container: str) -> str:
        networks = self.inspect(container)["NetworkSettings"]["Networks"]
        return str(networks[f"{PROJECT}_default"]["IPAddress"])

    def exec_json(self, service: str, *command: str) -> Any:
        """Run a command in the service's first container; its stdout as JSON."""
        return json.loads(self.compose("exec", "-T", service, *command, timeout_s=60))

    def fetch_json(self, service: str, url: str) -> Any:
        """GET `url` from inside the service's first container (nothing published)."""
        script = (
            f"import urllib.request as r; print(r.urlopen({url!r}, timeout=10).read().decode())"
        )
        return self.exec_json(service, "python", "-c", script)

    def wait_healthy(self, timeout_s: float) -> dict[str, str]:
        """Wait until every running container reports healthy; name -> health status."""
        health: dict[str, str] = {}

        def all_healthy() -> bool:
            health.clear()
            for container in self.compose("ps", "-q").split():
                state = self.inspect(container)
                found = state["State"].get("Health") or {"Status": "none", "Log": []}
                name = state["Name"].lstrip("/")
                health[name] = found["Status"]
                if found["Log"] and found["Status"] != "healthy":
                    last[name] = found["Log"][-1]["Output"].strip()[:300]
            return bool(health) and all(status == "healthy" for status in health.values())

        last: dict[str, str] = {}
        wait_for(all_healthy, timeout_s, lambda: f"not all healthy: {health}; last: {last}")
        return dict(health)


def wait_for(condition: Callable[[], bool], timeout_s: float, describe: Callable[[], str]) -> float:
    """Poll `condition` until true; the seconds it took, or `TimeoutError` saying what was seen."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"after {timeout_s:.0f} s: {describe()}")
        time.sleep(0.5)
    return time.monotonic() - start
