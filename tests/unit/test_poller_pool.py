"""The poller's pool: threads start as calls need them, never beyond the most, leave when idle,
come back under load, and no call is lost when one leaves."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator

import pytest

from imageq.worker.poller_pool import ElasticPool
from tests.conftest import wait_for

TIMEOUT_S = 5.0


@pytest.fixture
def pools() -> Iterator[list[ElasticPool]]:
    """Pools a test makes; shut down after it, pass or fail."""
    made: list[ElasticPool] = []
    yield made
    for pool in made:
        pool.shutdown(wait=True)


def make(pools: list[ElasticPool], most: int, *, idle_s: float) -> ElasticPool:
    pool = ElasticPool(most, idle_s=idle_s, name="test-pool")
    pools.append(pool)
    return pool


class Gate:
    """Calls that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.running = self.peak = self.done = 0

    def call(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.release.wait(TIMEOUT_S)
        finally:
            with self._lock:
                self.running -= 1
                self.done += 1


def test_threads_start_only_as_calls_need_them(pools: list[ElasticPool]) -> None:
    """No thread before the first call; one per call running at once, up to the most."""
    pool = make(pools, 8, idle_s=TIMEOUT_S)
    assert pool.threads == 0
    gate = Gate()
    for _ in range(3):
        pool.submit(gate.call)
    wait_for(lambda: gate.running == 3, timeout_s=TIMEOUT_S, what="three calls running")
    assert pool.threads == 3
    gate.release.set()
    wait_for(lambda: gate.done == 3, timeout_s=TIMEOUT_S, what="the calls done")


def test_never_more_threads_than_the_most_and_every_call_runs(pools: list[ElasticPool]) -> None:
    """20 blocking calls on a pool of 3: 3 run at once, the rest wait their turn, all run."""
    pool = make(pools, 3, idle_s=TIMEOUT_S)
    gate = Gate()
    for _ in range(20):
        pool.submit(gate.call)
    wait_for(lambda: gate.running == 3, timeout_s=TIMEOUT_S, what="three calls running")
    assert pool.threads == 3
    gate.release.set()
    wait_for(lambda: gate.done == 20, timeout_s=TIMEOUT_S, what="all 20 calls done")
    assert gate.peak == 3
    assert pool.threads <= 3


def run_burst(pool: ElasticPool, gate: Gate, burst: int) -> None:
    for _ in range(6):
        pool.submit(gate.call)
    wait_for(lambda: gate.running == 6, timeout_s=TIMEOUT_S, what=f"burst {burst} running")
    assert pool.threads == 6
    gate.release.set()
    wait_for(lambda: gate.done == 6, timeout_s=TIMEOUT_S, what=f"burst {burst} done")


def test_idle_threads_leave_and_come_back_under_load(pools: list[ElasticPool]) -> None:
    """After a burst, every thread leaves once idle for `idle_s`; the next burst starts as many
    again, and its calls run."""
    pool = make(pools, 8, idle_s=0.05)
    for burst in range(2):
        run_burst(pool, Gate(), burst)
        wait_for(lambda: pool.threads == 0, timeout_s=TIMEOUT_S, what="every thread gone")
        assert pool.idle == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("test-pool")]


def test_a_steady_trickle_keeps_one_thread_and_lets_the_rest_go(
    pools: list[ElasticPool],
) -> None:
    """One call at a time goes to the thread idle most recently, so the other threads stay
    idle and leave while calls keep coming (a queue would keep them all alive)."""
    pool = make(pools, 8, idle_s=0.2)
    gate = Gate()
    for _ in range(4):
        pool.submit(gate.call)
    wait_for(lambda: gate.running == 4, timeout_s=TIMEOUT_S, what="four calls running")
    gate.release.set()
    wait_for(lambda: gate.done == 4, timeout_s=TIMEOUT_S, what="the four done")
    done = threading.Event()
    give_up = time.monotonic() + TIMEOUT_S
    while pool.threads > 1:
        assert time.monotonic() < give_up, f"{pool.threads} threads kept by a trickle of calls"
        done.clear()
        pool.submit(done.set)
        assert done.wait(TIMEOUT_S)
        time.sleep(0.01)  # the pace of the trickle: 100 calls/s, well inside `idle_s`
    assert pool.threads == 1


def test_no_call_is_lost_while_threads_leave(pools: list[ElasticPool]) -> None:
    """Calls submitted at the moment threads time out (idle_s of 0.5 ms, calls at random
    gaps around it, bursts of 1-4) all run, and the count of threads stays true."""
    pool = make(pools, 4, idle_s=0.0005)
    rng = random.Random(17)
    lock = threading.Lock()
    ran = [0]

    def count() -> None:
        with lock:
            ran[0] += 1

    submitted = 0
    for _ in range(1500):
        for _ in range(rng.randint(1, 4)):
            pool.submit(count)
            submitted += 1
        time.sleep(rng.choice((0, 0.0002, 0.0005, 0.001)))
        assert 0 <= pool.threads <= 4
    wait_for(lambda: ran[0] == submitted, timeout_s=TIMEOUT_S, what=f"{submitted} calls run")
    wait_for(lambda: pool.threads == 0, timeout_s=TIMEOUT_S, what="every thread gone")


def test_a_failing_call_is_logged_and_its_thread_goes_on(
    pools: list[ElasticPool], caplog: pytest.LogCaptureFixture
) -> None:
    """An exception is logged; the same thread then runs the next call."""
    pool = make(pools, 1, idle_s=TIMEOUT_S)
    names: list[str] = []

    def fail() -> None:
        names.append(threading.current_thread().name)
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="imageq.worker.poller_pool"):
        pool.submit(fail)
        done = threading.Event()

        def succeed() -> None:
            names.append(threading.current_thread().name)
            done.set()

        pool.submit(succeed)
        assert done.wait(TIMEOUT_S)
    assert names[0] == names[1]
    assert "a call on test-pool failed" in caplog.text


def test_shutdown_drops_waiting_calls_joins_threads_and_refuses_more(
    pools: list[ElasticPool],
) -> None:
    """Shut down with calls waiting: the running ones finish, the waiting ones are dropped,
    every thread has left when it returns, and a later submit raises."""
    pool = make(pools, 2, idle_s=TIMEOUT_S)
    gate = Gate()
    for _ in range(5):
        pool.submit(gate.call)
    wait_for(lambda: gate.running == 2, timeout_s=TIMEOUT_S, what="two calls running")
    threading.Timer(0.05, gate.release.set).start()
    pool.shutdown(wait=True)
    assert gate.done == 2
    assert pool.threads == 0
    with pytest.raises(RuntimeError):
        pool.submit(gate.call)


def test_at_least_one_thread() -> None:
    """A pool of no threads is refused when made."""
    with pytest.raises(ValueError, match="at least 1"):
        ElasticPool(0, idle_s=1.0, name="none")
