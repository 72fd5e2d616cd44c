"""A webhook receiver that records when each notification arrived, and keeps up with thousands.

An aiohttp server on its own event loop in a background thread: it answers 200 at once and
keeps, per job, every arrival time and the first body. The job is read from the `webhook-id`
header (`msg_<job id>`), which both designs send.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web

from imageq.simulator.server import base_url_of, bind, start_runner

_START_TIMEOUT_S = 10.0


@dataclass
class Arrivals:
    """Per job id: the epoch times its notifications arrived, and the body of the first."""

    times: dict[str, list[float]] = field(default_factory=dict)
    first_body: dict[str, bytes] = field(default_factory=dict)


class ArrivalReceiver:
    """`with ArrivalReceiver() as receiver:` then POST to `receiver.url`."""

    def __init__(self) -> None:
        self.arrivals = Arrivals()
        self._lock = threading.Lock()
        self._sock = bind("127.0.0.1", 0)
        self.url = f"{base_url_of(self._sock)}/hook"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("webhook receiver did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_START_TIMEOUT_S)
        self._sock.close()

    def notified(self) -> int:
        """How many distinct jobs have been notified so far."""
        with self._lock:
            return len(self.arrivals.times)

    def snapshot(self) -> Arrivals:
        """A copy of what arrived so far."""
        with self._lock:
            return Arrivals(
                {job: list(times) for job, times in self.arrivals.times.items()},
                dict(self.arrivals.first_body),
            )

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        job_id = request.headers.get("webhook-id", "").removeprefix("msg_")
        with self._lock:
            self.arrivals.times.setdefault(job_id, []).append(at)
            self.arrivals.first_body.setdefault(job_id, body)
        return web.Response(status=200)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        runner = await start_runner(app, self._sock)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
