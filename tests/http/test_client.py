"""The API client over real HTTP against the simulator: envelopes, fallback, errors, secrecy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imageq.config import ApiSettings
from imageq.devenv.redis_server import free_port
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.params import validate_params
from imageq.worker.domain.status import RemoteStatus
from imageq.worker.errors import (
    ApiError,
    ApiUnavailable,
    ApiUnreachable,
    AuthenticationFailed,
    SafetyRejected,
)
from imageq.worker.policy.submit_retry import may_have_reached_api
from imageq.worker.upstream.client import ApiClient
from tests.conftest import API_KEY, wait_for

PARAMS = validate_params("a castle sim:latency=0.2", aspect_ratio="2:1", resolution="2K")


def client_for(base_url: str, key: str = API_KEY) -> ApiClient:
    return ApiClient(ApiSettings(base_url=base_url, key=key, connect_timeout_s=1, read_timeout_s=2))


@pytest.fixture(scope="module", params=["gpt_image_2_official", "platform"])
def sim(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    config = SimConfig(api_key=API_KEY, latency="fixed:5", envelope=request.param, seed=3)
    with SimulatorServer(config) as server:
        yield server


def test_submit_then_query_until_done(sim: SimulatorServer) -> None:
    """Both submit envelopes parse; the task is found by id and by out_task_id."""
    client = client_for(sim.base_url)
    task = client.submit("client-1", PARAMS)
    assert task.task_id
    assert task.status is RemoteStatus.PENDING
    done = wait_for(
        lambda: (t := client.get_task(task.task_id)).status is RemoteStatus.SUCCEEDED and t,
        timeout_s=5,
        what="task completion",
    )
    assert done.output_urls
    assert done.output_urls[0].startswith(sim.base_url)
    found = client.find_by_out_task_id("client-1")
    assert found is not None
    assert found.task_id == task.task_id
    assert client.find_by_out_task_id("never-submitted") is None


def test_falls_back_to_post_query_when_get_is_absent() -> None:
    """GET /v1/tasks/{id} answering 404 switches the client to POST /api/openapi/query."""
    config = SimConfig(api_key=API_KEY, latency="fixed:5", v1_tasks=False)
    with SimulatorServer(config) as server:
        client = client_for(server.base_url)
        task = client.submit("fallback-1", PARAMS)
        assert client.get_task(task.task_id).task_id == task.task_id
        assert client._query_by_post is True
        assert client.get_task(task.task_id).task_id == task.task_id


def test_errors_are_classified_and_keep_the_key_out(sim: SimulatorServer) -> None:
    """Wrong key: final AuthenticationFailed; unsafe prompt: SafetyRejected; no key anywhere."""
    wrong = client_for(sim.base_url, key="sk-wrong-key-abcdef")
    with pytest.raises(AuthenticationFailed) as caught:
        wrong.submit("client-2", PARAMS)
    assert caught.value.http_status == 401
    assert "sk-wrong-key-abcdef" not in f"{caught.value} {caught.value!r}"
    unsafe = validate_params("sim:unsafe", aspect_ratio="1:1", resolution="1K")
    with pytest.raises(SafetyRejected) as rejected:
        client_for(sim.base_url).submit("client-3", unsafe)
    assert rejected.value.retryable is False
    assert API_KEY not in repr(client_for(sim.base_url))


@pytest.mark.parametrize("marker", ["sim:pollgarbage=1", "sim:polldrop=1", "sim:poll503=1"])
def test_transient_query_faults_are_retryable(sim: SimulatorServer, marker: str) -> None:
    """A non-JSON body, a dropped connection and a 503 are retryable errors, then it works."""
    client = client_for(sim.base_url)
    task = client.submit(
        f"client-{marker}", validate_params(marker, aspect_ratio="1:1", resolution="1K")
    )
    with pytest.raises(ApiUnavailable) as caught:
        client.get_task(task.task_id)
    assert caught.value.retryable
    assert client.get_task(task.task_id).task_id == task.task_id


def test_nothing_listening_is_retryable() -> None:
    """Connection refused is a retryable ApiUnavailable without an HTTP status."""
    with pytest.raises(ApiError) as caught:
        client_for(f"http://127.0.0.1:{free_port()}").get_task("t")
    assert caught.value.retryable
    assert caught.value.http_status is None


def test_a_submit_that_found_nothing_listening_names_the_submit_and_was_never_sent() -> None:
    """No connection at all: ApiUnreachable, naming the submit it could not send, so the next
    attempt knows nothing can have been created and sends without a lookup first."""
    with pytest.raises(ApiUnreachable) as caught:
        client_for(f"http://127.0.0.1:{free_port()}").submit("job-1", PARAMS)
    assert caught.value.message == "POST /api/openapi/submit: could not connect"
    assert not may_have_reached_api(caught.value)


def test_a_dropped_submit_may_have_reached_the_api(sim: SimulatorServer) -> None:
    """A connection that was made and then dropped may hide an accepted submit."""
    dropped = validate_params("a castle sim:submitdrop=1", aspect_ratio="1:1", resolution="1K")
    with pytest.raises(ApiError) as caught:
        client_for(sim.base_url).submit(f"job-drop-{sim.config.envelope}", dropped)
    assert not isinstance(caught.value, ApiUnreachable)
    assert may_have_reached_api(caught.value)
