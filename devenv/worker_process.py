"""Start a real Celery worker process for imageq, configured through its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from imageq.worker.memory_release import worker_environment


def settings_env(values: Mapping[str, Any], *, prefix: str = "IMAGEQ_") -> dict[str, str]:
    """Flatten nested settings into variables: {"api": {"key": k}} -> IMAGEQ_API__KEY."""
    env: dict[str, str] = {}
    for name, value in values.items():
        key = f"{prefix}{name.upper()}"
        if isinstance(value, Mapping):
            env.update(settings_env(value, prefix=f"{key}__"))
        else:
            env[key] = str(value)
    return env


class WorkerProcess:
    """`celery -A imageq.worker.app worker` in a child process, logging to a file."""

    ready_marker = " ready."

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        name: str = "imageq",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.log_path = log_path
        # As `imageq worker` runs it: glibc's malloc tunables in its environment.
        self._env = worker_environment({**os.environ, **env, "PYTHONUNBUFFERED": "1"})
        self._name = name
        self._extra_args = extra_args
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "imageq.worker.app", "worker",
            "--loglevel=INFO", f"--hostname={self._name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            *self._extra_args,
        ]  # fmt: skip

    def start(self, *, ready_timeout_s: float = 60.0) -> Self:
        """Start the process and return once it says it is ready."""
        command = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        give_up = time.monotonic() + ready_timeout_s
        while self.ready_marker not in self.log():
            if self._process.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{self.log()[-3000:]}")
            if time.monotonic() > give_up:
                self.stop()
                raise RuntimeError(
                    f"worker not ready in {ready_timeout_s} s:\n{self.log()[-3000:]}"
                )
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, holding whatever messages it had."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, *, timeout_s: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not end in time."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class BeatProcess(WorkerProcess):
    """`celery -A imageq.worker.app beat`: the scheduler (scheduled runs and the sweeper)."""

    ready_marker = "beat: Starting..."

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "imageq.worker.app", "beat", "--loglevel=INFO",
            *self._extra_args,
        ]  # fmt: skip
