"""A TCP relay on loopback between the workers and the simulator, that can take the API away.

`close()` is the API vanishing: the port stops listening (new connections are refused) and
every open connection is cut at once, a request in flight included, so a submit the simulator
already accepted may lose its answer, as when a real API falls over. `open()` listens on the
same port again. The simulator keeps running behind it, with all its tasks and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Final, Self, TypeVar

_T = TypeVar("_T")

_START_TIMEOUT_S: Final = 10.0
# After close(), another socket can briefly hold the port (TIME_WAIT aside, an outgoing
# connection may take it); listening again is retried this long.
_REBIND_TIMEOUT_S: Final = 30.0
_CHUNK: Final = 65536


class ApiGate:
    """`with ApiGate(upstream_port) as gate:` then point clients at `gate.base_url`."""

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self._host = host
        self._upstream_port = upstream_port
        self._sock = _listening_socket(host, 0)
        self.port: int = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-gate", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        self._run(self._listen(self._sock))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._run(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_START_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    def close(self) -> int:
        """Stop listening and cut every open connection; returns how many were cut."""
        return self._run(self._shut())

    def open(self) -> None:
        """Listen on the same port again (retried while the port is briefly taken)."""
        give_up = time.monotonic() + _REBIND_TIMEOUT_S
        while True:
            try:
                sock = _listening_socket(self._host, self.port)
                break
            except OSError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.2)
        self._run(self._listen(sock))

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        # The server and connections belong to the gate's event loop; touch them only there.
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_START_TIMEOUT_S)

    async def _listen(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._relay, sock=sock)

    async def _shut(self) -> int:
        if self._server is not None:
            self._server.close()
            self._server = None
        cut = len(self._open)
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        return cut

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._open.discard(end)
                end.transport.abort()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends; a cut connection just ends the copy."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
    with contextlib.suppress(ConnectionError, OSError):
        if sink.can_write_eof():
            sink.write_eof()


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
