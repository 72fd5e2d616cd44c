"""The poller's threads: started as polls need them, and let go once the load no longer does.

`concurrent.futures.ThreadPoolExecutor` never lets a thread go: after a burst, every thread it
started stays, with its stack, its malloc arena's share and the connections it opened, for the
life of the process. That is most of what a poller-mode worker's memory grows by with the jobs
in flight (`python -m bench.poller_memory`). This pool lets a thread that had nothing to do for
`idle_s` exit. An idle thread is handed the next call most-recently-idle first (a stack, not a
queue), so at a steady load the threads it needs stay busy and the ones beyond stay idle long
enough to leave; a queue would spread the calls over all of them, and none would ever go.

No call is lost when a thread leaves: a thread decides to leave under the pool's lock, only
with nothing queued and no call handed to it, and once it has left no call is handed to it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Call = tuple[Callable[..., object], tuple[Any, ...]]


class _Slot:
    """Where a waiting thread is handed its next call."""

    __slots__ = ("call", "wake")

    def __init__(self) -> None:
        self.call: Call | None = None
        self.wake = threading.Event()


class ElasticPool:
    """Runs `submit(fn, *args)` calls on at most `max_threads` threads, each started when a call
    finds no idle thread and let go after `idle_s` without a call. Calls beyond `max_threads`
    wait in order. A call's exception is logged, not raised. Thread-safe."""

    def __init__(self, max_threads: int, *, idle_s: float, name: str) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, not {max_threads}")
        self._max = max_threads
        self._idle_s = idle_s
        self._name = name
        self._lock = threading.Lock()
        self._waiting: deque[Call] = deque()  # calls no thread has taken yet
        self._idle: list[_Slot] = []  # threads waiting for a call, most recently idle last
        self._threads = 0
        self._started = 0
        self._closed = False
        self._alive: set[threading.Thread] = set()

    @property
    def threads(self) -> int:
        """Threads alive now (busy or idle)."""
        return self._threads

    @property
    def idle(self) -> int:
        """Threads waiting for a call now."""
        return len(self._idle)

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Run `fn(*args)` on an idle thread, a new one, or the first to come free."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            if self._idle:
                slot = self._idle.pop()
                slot.call = (fn, args)
                slot.wake.set()
                return
            self._waiting.append((fn, args))
            if self._threads >= self._max:
                return
            self._threads += 1
            self._started += 1
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{self._started}", daemon=True
            )
            self._alive.add(thread)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the call waits for a running one
            with self._lock:
                self._threads -= 1
                self._alive.discard(thread)
            if not self._threads:
                raise

    def shutdown(self, *, wait: bool = True, cancel_waiting: bool = True) -> None:
        """No more calls; drop the waiting ones (or let them run), let every thread go, and
        with `wait` return once they have."""
        with self._lock:
            self._closed = True
            if cancel_waiting:
                self._waiting.clear()
            for slot in self._idle:
                slot.wake.set()  # with no call: it leaves
            self._idle.clear()
            alive = list(self._alive)
        if wait:
            for thread in alive:
                if thread is not threading.current_thread():
                    thread.join()

    def _work(self) -> None:
        slot = _Slot()
        call = self._next(slot)
        while call is not None:
            fn, args = call
            try:
                fn(*args)
            except Exception:
                log.exception("a call on %s failed", self._name)
            del fn, args, call  # not held while idle
            call = self._next(slot)

    def _next(self, slot: _Slot) -> Call | None:
        """The next call for this thread, or None once it should leave (and it is counted
        out)."""
        with self._lock:
            if self._waiting:
                return self._waiting.popleft()
            if self._closed:
                self._leave()
                return None
            slot.call = None
            slot.wake.clear()
            self._idle.append(slot)
        slot.wake.wait(self._idle_s)
        with self._lock:
            call, slot.call = slot.call, None
            if call is not None:
                return call
            # Timed out (or shut down) with nothing handed over: out of the idle stack first,
            # so no call can be handed to it after this.
            if slot in self._idle:
                self._idle.remove(slot)
            if self._waiting and not self._closed:  # cannot happen while it was idle, but cheap
                return self._waiting.popleft()
            self._leave()
            return None

    def _leave(self) -> None:
        """Count this thread out (under the lock)."""
        self._threads -= 1
        self._alive.discard(threading.current_thread())
