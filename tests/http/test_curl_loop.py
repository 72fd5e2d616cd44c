"""The API client's event loop for GETs (`CurlLoop`) against real servers on loopback: many GETs
at once on one thread, every failure classified as a GET on a thread classifies it, the POST
query where the GET path is absent, and nothing sent or answered once stopped."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from imageq.config import ApiSettings
from imageq.devenv.redis_server import free_port
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.params import validate_params
from imageq.worker.errors import ApiError, ApiUnavailable
from imageq.worker.upstream.client import ApiClient, TaskReply
from imageq.worker.upstream.curl_loop import CurlLoop
from imageq.worker.upstream.curl_transport import CurlTransport
from imageq.worker.upstream.transport import Answer, PoolTransport
from tests.conftest import API_KEY

PARAMS = validate_params("a castle", aspect_ratio="1:1", resolution="1K")


def client_for(base_url: str, *, key: str = API_KEY, timeout_s: float = 2) -> ApiClient:
    settings = ApiSettings(
        base_url=base_url, key=key, connect_timeout_s=timeout_s, read_timeout_s=timeout_s
    )
    return ApiClient(settings)


@pytest.fixture
def looping() -> Iterator[list[ApiClient]]:
    """Clients a test gives a loop; closed after it, pass or fail."""
    clients: list[ApiClient] = []
    yield clients
    for client in clients:
        client.close()


def with_loop(clients: list[ApiClient], client: ApiClient) -> ApiClient:
    assert client.start_loop()
    clients.append(client)
    return client


def replies_to(client: ApiClient, task_ids: list[str], *, timeout_s: float) -> list[TaskReply]:
    """Send a GET per task id through the loop; the replies, in the order they came."""
    replies: list[TaskReply] = []
    all_in = threading.Event()

    def done(reply: TaskReply) -> None:
        replies.append(reply)
        if len(replies) == len(task_ids):
            all_in.set()

    for task_id in task_ids:
        assert client.get_task_later(task_id, done)
    assert all_in.wait(timeout_s), f"{len(replies)} of {len(task_ids)} replies came"
    return replies


def test_many_gets_wait_at_once_on_one_thread(looping: list[ApiClient]) -> None:
    """100 GETs to an API that answers in 0.2 s come back within 5 s (one after another they
    would take 20), each with its own task."""
    config = SimConfig(api_key=API_KEY, latency="fixed:30", request_delay="fixed:0.2")
    with SimulatorServer(config) as sim:
        client = with_loop(looping, client_for(sim.base_url))
        ids = [client.submit(f"loop-{n}", PARAMS).task_id for n in range(10)]
        wanted = [ids[n % 10] for n in range(100)]
        started = time.monotonic()
        replies = replies_to(client, wanted, timeout_s=10)
        elapsed = time.monotonic() - started
        tasks = [client.task_from(reply) for reply in replies]
    assert elapsed < 5
    assert all(isinstance(reply.outcome, Answer) for reply in replies)
    assert sorted(task.task_id for task in tasks) == sorted(wanted)
    assert sorted(reply.task_id for reply in replies) == sorted(wanted)


def test_replies_are_handed_over_on_the_loop_thread(looping: list[ApiClient]) -> None:
    """`done` runs on the loop's own thread, never on the caller's."""
    with SimulatorServer(SimConfig(api_key=API_KEY, latency="fixed:30")) as sim:
        client = with_loop(looping, client_for(sim.base_url))
        task_id = client.submit("loop-thread", PARAMS).task_id
        names: list[str] = []
        came = threading.Event()

        def done(_: TaskReply) -> None:
            names.append(threading.current_thread().name)
            came.set()

        client.get_task_later(task_id, done)
        assert came.wait(5)
    assert names == ["imageq-curl"]


def silent_server() -> socket.socket:
    """Accepts connections (the kernel's backlog) and never answers."""
    return socket.create_server(("127.0.0.1", 0))


@pytest.mark.parametrize("case", ["nothing listening", "no answer", "wrong key", "garbage", "drop"])
def test_failures_are_classified_as_on_a_thread(case: str, looping: list[ApiClient]) -> None:
    """Every failure a GET through the loop meets is the same `ApiError`, by class, message,
    status and retryability, as the same GET on the calling thread gets; no key in it."""
    config = SimConfig(api_key=API_KEY, latency="fixed:30")
    with SimulatorServer(config) as sim, silent_server() as silent:
        markers = {"garbage": "sim:pollgarbage=2", "drop": "sim:polldrop=2"}
        params = validate_params(f"x {markers.get(case, '')}", aspect_ratio="1:1", resolution="1K")
        task_id = client_for(sim.base_url).submit(f"loop-{case}", params).task_id
        base_url = {
            "nothing listening": f"http://127.0.0.1:{free_port()}",
            "no answer": f"http://127.0.0.1:{silent.getsockname()[1]}",
        }.get(case, sim.base_url)
        key = "sk-wrong-key-abcdef" if case == "wrong key" else API_KEY
        threaded = client_for(base_url, key=key, timeout_s=0.3)
        looped = with_loop(looping, client_for(base_url, key=key, timeout_s=0.3))
        with pytest.raises(ApiError) as on_thread:
            threaded.get_task(task_id)
        (reply,) = replies_to(looped, [task_id], timeout_s=5)
        with pytest.raises(ApiError) as on_loop:
            looped.task_from(reply)
    expected, got = on_thread.value, on_loop.value
    assert type(got) is type(expected)
    assert (got.message, got.http_status, got.retryable) == (
        expected.message,
        expected.http_status,
        expected.retryable,
    )
    assert "sk-wrong-key-abcdef" not in f"{got!r} {reply!r}"
    assert API_KEY not in f"{got!r} {reply!r}"


def test_an_absent_get_path_turns_to_the_post_query(looping: list[ApiClient]) -> None:
    """GET /v1/tasks/{id} answering 404 through the loop: the reply is read by the POST query,
    and from then on the loop is not offered the task's GET."""
    config = SimConfig(api_key=API_KEY, latency="fixed:30", v1_tasks=False)
    with SimulatorServer(config) as sim:
        client = with_loop(looping, client_for(sim.base_url))
        task_id = client.submit("loop-fallback", PARAMS).task_id
        (reply,) = replies_to(client, [task_id], timeout_s=5)
        assert client.task_from(reply).task_id == task_id
        assert not client.get_task_later(task_id, lambda _: None)
        assert client.get_task(task_id).task_id == task_id


def test_a_stopped_loop_sends_nothing_and_drops_what_was_in_flight(
    looping: list[ApiClient],
) -> None:
    """GETs in flight when the loop stops are never handed over; after it, `get_task_later`
    declines (the caller asks on its own thread) and the client still answers."""
    config = SimConfig(api_key=API_KEY, latency="fixed:30", request_delay="fixed:1")
    with SimulatorServer(config) as sim:
        client = with_loop(looping, client_for(sim.base_url))
        task_id = client.submit("loop-stop", PARAMS).task_id
        got: list[TaskReply] = []
        for _ in range(3):
            assert client.get_task_later(task_id, got.append)
        client.stop_loop()  # within the second the answers take: the loop's thread has ended
        assert got == []
        assert not client.get_task_later(task_id, got.append)
        assert client.get_task(task_id).task_id == task_id
    assert got == []


def test_no_loop_without_libcurl_reads() -> None:
    """A client given its own transport has no loop: `get_task_later` always declines."""
    transport = PoolTransport(
        f"http://127.0.0.1:{free_port()}", connect_timeout_s=1, read_timeout_s=1, max_connections=1
    )
    client = ApiClient(ApiSettings(base_url="http://127.0.0.1:1", key=API_KEY), transport=transport)
    assert not client.start_loop()
    assert not client.get_task_later("t", lambda _: None)


class BrokenLoop(CurlLoop):
    """A loop that fails right after starting the GETs it was sent (a bug, say)."""

    def _take_queued(self) -> None:
        super()._take_queued()
        raise RuntimeError("a bug in the loop")


def test_a_failed_loop_ends_its_gets_as_unavailable_and_takes_no_more() -> None:
    """GETs in flight when the loop fails each end with a retryable `ApiUnavailable` (no caller
    waits for an answer that cannot come); after it the loop refuses GETs, and a client with
    such a loop sends its GETs on the calling thread."""
    config = SimConfig(api_key=API_KEY, latency="fixed:30", request_delay="fixed:1")
    with SimulatorServer(config) as sim:
        transport = CurlTransport(
            sim.base_url, connect_timeout_s=2, read_timeout_s=2, max_connections=2
        )
        loop = BrokenLoop(transport)
        outcomes: list[Answer | ApiError] = []
        ended = threading.Event()

        def done(outcome: Answer | ApiError) -> None:
            outcomes.append(outcome)
            if len(outcomes) == 2:
                ended.set()

        # Both sent before it starts: it fails on its first turn, which takes them both.
        loop.send("/v1/tasks/a", {}, done)
        loop.send("/v1/tasks/b", {}, done)
        loop.start()
        assert ended.wait(5)
        assert not loop.running
        with pytest.raises(RuntimeError):
            loop.send("/v1/tasks/c", {}, done)
    assert all(isinstance(outcome, ApiUnavailable) for outcome in outcomes)
    assert all(isinstance(o, ApiError) and o.retryable for o in outcomes)
    assert sorted(str(o) for o in outcomes) == [
        "GET /v1/tasks/a: the request loop failed",
        "GET /v1/tasks/b: the request loop failed",
    ]
