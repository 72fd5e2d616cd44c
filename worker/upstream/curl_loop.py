"""Many GETs in flight on one thread: libcurl's multi interface, driven by `selectors`.

A thread blocked in a GET costs about 65 KB of resident memory all told (its stack, its share
of malloc's arenas); a GET on a libcurl multi handle costs its easy handle, about 7 KB
(`python -m bench.curl_multi`). So the poller sends its GETs here, and its threads do only the
short parts of a poll on either side of the request.

`send` may be called from any thread; the GET is set up and driven on the loop's own thread,
and `done` is called there with the `Answer` or the `ApiError` (classified as `CurlTransport`
classifies it), so it must be quick: hand the answer to another thread. GETs still in flight
when the loop is stopped are dropped without a call; should the loop itself fail, each ends
with an `ApiUnavailable`, and the loop takes no more.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import pycurl

from imageq.worker.errors import ApiError, ApiUnavailable
from imageq.worker.upstream.curl_transport import CurlGet, CurlTransport
from imageq.worker.upstream.transport import Answer

log = logging.getLogger(__name__)

Done = Callable[[Answer | ApiError], None]

_WAKE = object()  # the selector key data of the wake socket


class CurlLoop:
    """Sends GETs through `transport`'s handles, all from one thread. Start with `start()`,
    stop with `stop()`."""

    def __init__(self, transport: CurlTransport, *, name: str = "imageq-curl") -> None:
        self._transport = transport
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._lock = threading.Lock()
        self._queued: deque[tuple[str, Mapping[str, str], Done]] = deque()
        self._woken = False  # a wake byte is on its way: no need for another
        self._in_flight: dict[pycurl.Curl, tuple[CurlGet, Done]] = {}
        self._timer_at: float | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def running(self) -> bool:
        """Whether `send` takes GETs: started and neither stopped nor failed."""
        return self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Stop the loop; GETs queued or in flight are dropped, their `done` never called."""
        with self._lock:
            self._stopping = True
        if self._thread.is_alive():
            with contextlib.suppress(OSError):  # closed by a loop that ended meanwhile
                self._wake_w.send(b"\0")
            self._thread.join(timeout_s)

    def send(self, path: str, headers: Mapping[str, str], done: Done) -> None:
        """GET `path` with `headers`; `done` gets the outcome on the loop's thread."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("the curl loop is stopped")
            self._queued.append((path, headers, done))
            wake, self._woken = not self._woken, True
        if wake:
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        failed = False
        try:
            while not self._stopping:
                self._turn()
        except Exception:
            log.exception("the curl loop failed; its GETs end as ApiUnavailable")
            failed = True
        finally:
            with self._lock:
                self._stopping = True  # `send` refuses from now on
                queued, self._queued = self._queued, deque()
            self._close(failed, queued)

    def _turn(self) -> None:
        """Wait for a socket, the timer or a wake, then let libcurl act and deliver answers."""
        timeout = None if self._timer_at is None else max(0.0, self._timer_at - time.monotonic())
        for key, mask in self._selector.select(timeout):
            if key.data is _WAKE:
                self._take_queued()
                continue
            flags = (pycurl.CSELECT_IN if mask & selectors.EVENT_READ else 0) | (
                pycurl.CSELECT_OUT if mask & selectors.EVENT_WRITE else 0
            )
            self._multi.socket_action(key.fd, flags)
        if self._timer_at is not None and time.monotonic() >= self._timer_at:
            self._timer_at = None
            self._multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        self._deliver()

    def _take_queued(self) -> None:
        """Start the GETs `send` queued."""
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        with self._lock:
            queued, self._queued = self._queued, deque()
            self._woken = False
        for path, headers, done in queued:
            get = self._transport.prepare(path, headers)
            self._in_flight[get.handle] = (get, done)
            self._multi.add_handle(get.handle)  # sets the timer to start it

    def _deliver(self) -> None:
        """Hand each finished GET's outcome to its `done`."""
        while True:
            waiting, ok, failed = self._multi.info_read()
            for handle in ok:
                self._end(handle, None)
            for handle, code, _message in failed:
                self._end(handle, code)
            if not waiting:
                return

    def _end(self, handle: pycurl.Curl, code: int | None) -> None:
        self._multi.remove_handle(handle)
        get, done = self._in_flight.pop(handle)
        outcome: Answer | ApiError
        outcome = (
            self._transport.answered(get) if code is None else self._transport.failed(get, code)
        )
        try:
            done(outcome)
        except Exception:
            log.exception("a GET's answer could not be handed on")

    def _on_socket(self, what: int, fd: int, _multi: object, _data: object) -> None:
        """libcurl says which events it waits for on a socket."""
        if what == pycurl.POLL_REMOVE:
            with contextlib.suppress(KeyError):
                self._selector.unregister(fd)
            return
        events = (selectors.EVENT_READ if what & pycurl.POLL_IN else 0) | (
            selectors.EVENT_WRITE if what & pycurl.POLL_OUT else 0
        )
        try:
            self._selector.modify(fd, events)
        except KeyError:
            self._selector.register(fd, events)

    def _on_timer(self, timeout_ms: int) -> None:
        """libcurl says when to call it back with no socket event (-1: no timer)."""
        self._timer_at = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000

    def _close(self, failed: bool, queued: deque[tuple[str, Mapping[str, str], Done]]) -> None:
        """Let go of every handle; after a failure, end each GET not answered yet with an
        `ApiUnavailable`, so no caller waits for an answer that cannot come."""
        unanswered = [(get.path, done) for get, done in self._in_flight.values()]
        unanswered += [(path, done) for path, _headers, done in queued]
        for handle in list(self._in_flight):
            self._multi.remove_handle(handle)
            handle.close()
        self._in_flight.clear()
        if failed:
            for path, done in unanswered:
                with contextlib.suppress(Exception):
                    done(ApiUnavailable(f"GET {path}: the request loop failed"))
        self._multi.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
