"""The simulator's limits per key over HTTP: the requests-per-second limit (429 with
Retry-After past it), a forced 429 (`POST /_sim/throttle`), and the request log
(`GET /_sim/requests`), against a real server on loopback."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests

from imageq.simulator.server import SimulatorServer, start_simulator_process
from imageq.simulator.sim_config import SimConfig

KEY = "sk-test-limits"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = (2.0, 10.0)
DIGEST = hashlib.sha256(KEY.encode()).hexdigest()[:16]


@pytest.fixture
def limited() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:60", rate_limit_per_s=3)) as sim:
        yield sim


def query(sim: SimulatorServer) -> requests.Response:
    return requests.post(
        f"{sim.base_url}/api/openapi/query", json={"task_id": "x"}, headers=AUTH, timeout=TIMEOUT
    )


def test_past_the_rate_a_key_gets_429_with_retry_after(limited: SimulatorServer) -> None:
    """Three a second: the fourth and fifth are 429 with Retry-After 1 (404: no such task)."""
    answers = [query(limited) for _ in range(5)]
    assert [a.status_code for a in answers] == [404, 404, 404, 429, 429]
    assert answers[3].headers["Retry-After"] == "1"


def test_throttle_forces_the_next_429_and_the_log_lists_every_request() -> None:
    """`/_sim/throttle` makes the next request a 429 with the Retry-After asked for; the log
    names the key by its digest (never the key) and gives arrival, endpoint, status, answer."""
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:60")) as sim:
        forced = requests.post(
            f"{sim.base_url}/_sim/throttle", json={"count": 1, "retry_after": 5}, timeout=TIMEOUT
        )
        assert forced.json() == {"ok": True}
        first, second = query(sim), query(sim)
        assert (first.status_code, first.headers["Retry-After"]) == (429, "5")
        assert second.status_code == 404
        log = requests.get(f"{sim.base_url}/_sim/requests", timeout=TIMEOUT).json()
    assert KEY not in str(log)
    entries = log["keys"][DIGEST]
    assert [(e[1], e[2]) for e in entries] == [("query", 429), ("query", 404)]
    assert entries[0][0] <= entries[0][3] <= entries[1][0]


def test_rate_limit_option_on_the_command_line() -> None:
    """`--rate-limit` sets the limit per key."""
    process, url = start_simulator_process(["--api-key", KEY, "--port", "0", "--rate-limit", "1"])
    try:
        statuses = [
            requests.post(
                f"{url}/api/openapi/query", json={"task_id": "x"}, headers=AUTH, timeout=TIMEOUT
            ).status_code
            for _ in range(2)
        ]
    finally:
        process.terminate()
        process.wait(10)
    assert statuses == [404, 429]
