"""Running the simulator: on a socket, in a background thread, or as a child process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from aiohttp import web

from imageq.simulator.routes import LIMITS, SIM, create_app
from imageq.simulator.sim_config import SimConfig

_T = TypeVar("_T")
READY_LINE: Final = re.compile(rb"simulator listening on (http://\S+)[^\n]*\n")
# Requests still running at shutdown (e.g. sleeping a request_delay) get this long to finish.
_SHUTDOWN_TIMEOUT_S: Final = 1.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port."""
    sock = socket.create_server((host, port), backlog=1024)
    sock.setblocking(False)
    return sock


def base_url_of(sock: socket.socket) -> str:
    """`http://host:port` of a bound socket, with the port actually given by the OS."""
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


async def start_runner(app: web.Application, sock: socket.socket) -> web.AppRunner:
    """Serve `app` on `sock` until the returned runner is cleaned up."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


class SimulatorServer:
    """The simulator in a background thread of this process, for tests: a context manager.

    `base_url` is valid between enter and exit; `stats()` and `reset()` act on the live state.
    """

    def __init__(self, config: SimConfig, *, start_timeout_s: float = 10.0) -> None:
        self.config = config
        self.app = create_app(config)
        self._start_timeout_s = start_timeout_s
        self._sock: socket.socket | None = None
        self._base_url: str | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, once started."""
        if self._base_url is None:
            raise RuntimeError("simulator is not running")
        return self._base_url

    def start(self) -> None:
        """Bind and start serving; raise RuntimeError if not up within the start timeout."""
        self._sock = bind(self.config.host, self.config.port)
        self._base_url = base_url_of(self._sock)
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError("simulator failed to start") from self._error

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(self._start_timeout_s + _SHUTDOWN_TIMEOUT_S)
        if self._sock is not None:
            self._sock.close()

    def stats(self) -> dict[str, Any]:
        """The same document as `GET /_sim/stats`."""
        return self._call(lambda: self.app[SIM].stats())

    def reset(self) -> None:
        """Forget every task and counter, as `POST /_sim/reset` does."""
        self._call(self._reset)

    def _reset(self) -> None:
        self.app[SIM].reset()
        self.app[LIMITS].reset()

    def requests(self) -> dict[str, Any]:
        """The same document as `GET /_sim/requests`: every API request's time, by key."""
        return self._call(lambda: self.app[LIMITS].requests())

    def throttle(self, *, count: int = 1, retry_after_s: int | None = None) -> None:
        """Answer the next `count` API requests with 429, as `POST /_sim/throttle` does."""
        self._call(lambda: self.app[LIMITS].force(count=count, retry_after_s=retry_after_s))

    def set_faults(self, *, rate_429: float = 0, rate_503: float = 0, rate_drop: float = 0) -> None:
        """Change the global fault rates now, as `POST /_sim/faults` does (all 0: healthy)."""
        self._call(
            lambda: self.app[SIM].set_fault_rates(
                rate_429=rate_429, rate_503=rate_503, rate_drop=rate_drop
            )
        )

    def refuse_connections(self) -> None:
        """Take the API host down: stop listening on the port (connecting is refused) and drop
        API requests on connections already open, until `accept_connections`."""
        self._call_soon(self._refuse())

    def accept_connections(self) -> None:
        """Bring the host back on the same port, with its tasks and counters as they were."""
        self._call_soon(self._accept())

    async def _refuse(self) -> None:
        self.app[SIM].refusing = True
        assert self._runner is not None
        for site in list(self._runner.sites):
            await site.stop()  # closes the listening socket; open connections stay

    async def _accept(self) -> None:
        assert self._runner is not None
        self._sock = bind(self.config.host, int(self.base_url.rsplit(":", 1)[1]))
        await web.SockSite(self._runner, self._sock).start()
        self.app[SIM].refusing = False

    def _call_soon(self, work: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            work.close()
            raise RuntimeError("simulator is not running")
        asyncio.run_coroutine_threadsafe(work, self._loop).result(self._start_timeout_s)

    def _call(self, function: Callable[[], _T]) -> _T:
        # The state belongs to the server's event loop; touch it only from there.
        if self._loop is None:
            raise RuntimeError("simulator is not running")

        async def run() -> _T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self._start_timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as error:  # reported to start(); a thread has nobody else to tell
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        assert self._sock is not None  # bound by start() before the thread runs
        runner = self._runner = await start_runner(self.app, self._sock)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()


def start_simulator_process(
    args: Sequence[str], *, timeout_s: float = 15.0, python: str = sys.executable
) -> tuple[subprocess.Popen[bytes], str]:
    """Run `python -m imageq.simulator ARGS` and return the process and its base URL.

    Waits at most `timeout_s` for the "simulator listening on" line; on timeout or early exit the
    process is killed and RuntimeError raised. The caller owns the process (terminate it).
    """
    command = [python, "-m", "imageq.simulator", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE)  # noqa: S603 -- starting it is the job
    assert process.stdout is not None  # stdout=PIPE guarantees it
    deadline = time.monotonic() + timeout_s
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining_s := deadline - time.monotonic()) > 0:
            if not selector.select(remaining_s):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            seen += chunk
            if match := READY_LINE.search(seen):
                # The child prints nothing else to stdout; closing our end avoids a leaked pipe.
                process.stdout.close()
                return process, match.group(1).decode()
            if not chunk:
                break
    process.kill()
    process.wait()
    process.stdout.close()
    raise RuntimeError(f"simulator did not report its address (exit code {process.returncode})")


def stop_simulator_process(process: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> None:
    """Stop a simulator started by `start_simulator_process`: terminate, then kill if it has not
    gone within `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class SimulatorProcess:
    """The simulator as a child process, controlled over its `/_sim/` routes: for runs whose
    timing the simulator must measure without sharing a GIL with the test (the request
    budget's arrival times). A context manager, like `SimulatorServer`."""

    def __init__(self, config: SimConfig, *, start_timeout_s: float = 15.0) -> None:
        self.config = config
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._base_url: str | None = None

    def __enter__(self) -> Self:
        args = [
            f"--api-key={self.config.api_key}",
            f"--latency={self.config.latency}",
            f"--rate-limit={self.config.rate_limit_per_s}",
        ]
        self._process, self._base_url = start_simulator_process(
            args, timeout_s=self._start_timeout_s
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_simulator_process(self._process, timeout_s=5)

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the simulator process is not running")
        return self._base_url

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the simulator process is not running")
        return self._process.pid

    def stats(self) -> dict[str, Any]:
        document: dict[str, Any] = self._control("GET", "stats")
        return document

    def requests(self) -> dict[str, Any]:
        document: dict[str, Any] = self._control("GET", "requests")
        return document

    def reset(self) -> None:
        self._control("POST", "reset", {})

    def throttle(self, *, count: int = 1, retry_after_s: int | None = None) -> None:
        self._control("POST", "throttle", {"count": count, "retry_after": retry_after_s})

    def set_faults(self, *, rate_429: float = 0, rate_503: float = 0, rate_drop: float = 0) -> None:
        faults = {"rate_429": rate_429, "rate_503": rate_503, "rate_drop": rate_drop}
        self._control("POST", "faults", faults)

    def _control(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 -- our own child, on loopback
            f"{self.base_url}/_sim/{route}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return json.load(answer)
