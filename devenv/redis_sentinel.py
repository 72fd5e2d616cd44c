"""A throwaway Redis Sentinel group on loopback: a master, its replicas and a quorum of sentinels,
each a real `redis-server` process on a free port, for tests that fail the master over.

The sentinels' timings are arguments, so a test can have a failover within seconds (Redis's
defaults take 30 s to call a master down and minutes to give up on a failover).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from imageq.devenv.redis_server import (
    RedisServer,
    RedisUnavailable,
    find_redis_server,
    free_port,
    stop_server_process,
)

# Replicas sync at once: Redis otherwise waits 5 s for more replicas before a diskless sync.
_REPLICATION = ("--repl-diskless-sync-delay", "0")


class SentinelServer:
    """One `redis-server --sentinel` process watching `master_name` at `master_port`."""

    def __init__(
        self,
        *,
        master_name: str,
        master_port: int,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
        password: str | None = None,
        master_password: str | None = None,
        log_path: Path | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.port = free_port()
        self._password = password
        self._start_timeout_s = start_timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="imageq-sentinel-")
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self._tmp.name}",
            f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master_name} 1",
        ]
        if log_path is not None:  # what the sentinels saw and decided, to read after a test
            lines += ["loglevel notice", f"logfile {log_path}"]
        if master_password:
            lines.append(f"sentinel auth-pass {master_name} {master_password}")
        if password:
            lines += [f"requirepass {password}", f"sentinel sentinel-pass {password}"]
        # The sentinel rewrites its file as it learns the group: a file of its own, mode 600.
        self._config = Path(self._tmp.name) / "sentinel.conf"
        self._config.touch(mode=0o600)
        self._config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, *, timeout_s: float = 1.0) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            password=self._password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    def start(self) -> SentinelServer:
        command = [find_redis_server(), str(self._config), "--sentinel"]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_until(
            self._answers,
            timeout_s=self._start_timeout_s,
            exited=lambda: self._process is not None and self._process.poll() is not None,
            what="redis sentinel",
        )
        return self

    def _answers(self) -> bool:
        client = self.client(timeout_s=0.2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            stop_server_process(self._process)
        self._process = None
        self._tmp.cleanup()


class SentinelGroup:
    """A master, `replicas` replicas and `sentinels` sentinels (quorum: a majority of them).

    `with SentinelGroup() as group:`; `group.sentinel_addresses` and `group.master_name` are
    what imageq's settings need; `group.master` is the current master's server."""

    def __init__(
        self,
        *,
        master_name: str = "imageq",
        replicas: int = 1,
        sentinels: int = 3,
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        log_dir: Path | None = None,
    ) -> None:
        self.master_name = master_name
        self._password = password
        self._log_dir = log_dir
        self.master = self._server()
        self.replicas = [self._replica_of(self.master.port) for _ in range(replicas)]
        self.sentinels = [
            SentinelServer(
                master_name=master_name,
                master_port=self.master.port,
                quorum=sentinels // 2 + 1,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                password=sentinel_password,
                master_password=password,
                log_path=log_dir / f"sentinel-{index}.log" if log_dir is not None else None,
            )
            for index in range(sentinels)
        ]

    def _server(self, *, port: int | None = None, follow: int | None = None) -> RedisServer:
        port = port or free_port()
        args = [*_REPLICATION]
        if follow is not None:
            args += ["--replicaof", "127.0.0.1", str(follow)]
        if self._log_dir is not None:
            log = self._log_dir / f"redis-{port}.log"
            args += ["--loglevel", "notice", "--logfile", str(log)]
        return RedisServer(port=port, password=self._password, extra_args=args)

    def _replica_of(self, master_port: int, *, port: int | None = None) -> RedisServer:
        return self._server(port=port, follow=master_port)

    @property
    def sentinel_addresses(self) -> list[str]:
        return [sentinel.address for sentinel in self.sentinels]

    def start(self, *, timeout_s: float = 30.0) -> SentinelGroup:
        """Start every process, and return once each sentinel knows the replicas and the other
        sentinels (only then can they agree on a failover)."""
        self.master.start()
        for server in self.replicas:
            server.start()
        for sentinel in self.sentinels:
            sentinel.start()
        _wait_until(self._formed, timeout_s=timeout_s, what="the sentinel group to form")
        return self

    def _formed(self) -> bool:
        return self.replicas_in_sync() == len(self.replicas) and all(
            info is not None
            and int(info["num-other-sentinels"]) == len(self.sentinels) - 1
            and int(info["num-slaves"]) == len(self.replicas)
            for info in map(self._master_info, self.sentinels)
        )

    def _master_info(self, sentinel: SentinelServer) -> dict[str, str] | None:
        client = sentinel.client()
        try:
            reply = client.execute_command(  # type: ignore[no-untyped-call]  # untyped in redis-py
                "SENTINEL", "MASTER", self.master_name
            )
        except redis.RedisError:
            return None
        finally:
            client.close()
        # A flat list of names and values; redis-py may already have made it a dict.
        if isinstance(reply, dict):
            return {_text(key): _text(value) for key, value in reply.items()}
        items = [_text(item) for item in reply]
        return dict(zip(items[::2], items[1::2], strict=True))

    def replicas_in_sync(self) -> int:
        """How many replicas acknowledge a write to the master now (a probe key in database 15,
        then `WAIT`)."""
        client = redis.Redis.from_url(
            self.master.url(15), socket_timeout=1, socket_connect_timeout=1
        )
        try:
            client.set("imageq-devenv:probe", time.time())
            return int(client.wait(len(self.replicas), 200))
        except redis.RedisError:
            return 0
        finally:
            client.close()

    def rejoin(self, server: RedisServer, *, timeout_s: float) -> float:
        """Start a stopped server again on its port as a replica of the current master (how an
        operator brings a failed master back), once every sentinel names that master (a
        sentinel still on the old one could take the old address back for the master); seconds
        until the master streams to it."""
        started = time.monotonic()
        _wait_until(
            lambda: self._all_name(self.master.port),
            timeout_s=timeout_s,
            what="every sentinel naming the new master",
        )
        server.stop()
        fresh = self._replica_of(self.master.port, port=server.port).start()
        self.replicas = [fresh if other is server else other for other in self.replicas]
        in_sync = len(self.replicas)
        _wait_until(
            lambda: self.replicas_in_sync() >= in_sync, timeout_s=timeout_s, what="replica in sync"
        )
        return time.monotonic() - started

    def master_port(self) -> int | None:
        """The port the sentinels' majority names as the master now (None: no majority)."""
        ports = [info.get("port") for info in map(self._master_info, self.sentinels) if info]
        for port in set(ports):
            if port is not None and ports.count(port) > len(self.sentinels) // 2:
                return int(port)
        return None

    def _all_name(self, port: int) -> bool:
        infos = [self._master_info(sentinel) for sentinel in self.sentinels]
        return all(info is not None and int(info["port"]) == port for info in infos)

    def kill_master(self) -> int:
        """SIGKILL the current master; the port it had."""
        port = self.master.port
        self.master.kill()
        return port

    def wait_for_new_master(self, old_port: int, *, timeout_s: float) -> float:
        """Seconds until a majority of the sentinels names a master other than `old_port`, and
        that server takes writes; `self.master` is then that server."""
        started = time.monotonic()
        _wait_until(
            lambda: self._promoted(old_port), timeout_s=timeout_s, what="a new master", tick_s=0.05
        )
        return time.monotonic() - started

    def _promoted(self, old_port: int) -> bool:
        port = self.master_port()
        if port is None or port == old_port:
            return False
        server = next(server for server in self.replicas if server.port == port)
        client = redis.Redis.from_url(server.url(), socket_timeout=1, socket_connect_timeout=1)
        try:
            role = client.execute_command("ROLE")  # type: ignore[no-untyped-call]  # untyped in redis-py
        except redis.RedisError:
            return False
        finally:
            client.close()
        if _text(role[0]) != "master":
            return False
        self.replicas = [self.master, *(other for other in self.replicas if other is not server)]
        self.master = server
        return True

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in [self.master, *self.replicas]:
            server.stop()

    def __enter__(self) -> SentinelGroup:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    exited: Callable[[], bool] = lambda: False,
    tick_s: float = 0.02,
) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        if exited():
            raise RedisUnavailable(f"{what} exited at start")
        if time.monotonic() > give_up:
            raise RedisUnavailable(f"no {what} within {timeout_s} s")
        time.sleep(tick_s)


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
