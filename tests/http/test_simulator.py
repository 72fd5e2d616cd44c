"""The API simulator against its contract: a real server on loopback, spoken to with `requests`."""

from __future__ import annotations

import contextlib
import io
import re
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, TypeVar

import pytest
import requests
from PIL import Image

from imageq.simulator.phases import SYNONYMS, Phase
from imageq.simulator.server import SimulatorServer, start_simulator_process
from imageq.simulator.sim_config import SimConfig

KEY = "sk-test-simulator"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = (2.0, 10.0)
TASK_ID = re.compile(r"^task_[A-Z0-9]{26}$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T = TypeVar("T")
StartSim = Callable[..., SimulatorServer]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    """A default simulator whose tasks stay unfinished unless a prompt sets `sim:latency`."""
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:60")) as server:
        yield server


@pytest.fixture
def start_sim() -> Iterator[StartSim]:
    """Start a simulator with config overrides; all are stopped after the test."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> SimulatorServer:
            config = SimConfig(api_key=KEY, **{"latency": "fixed:60", **overrides})
            return stack.enter_context(SimulatorServer(config))

        yield start


def new_id() -> str:
    return f"out-{uuid.uuid4().hex}"


def submit(
    server: SimulatorServer,
    prompt: str = "a red fox",
    out_task_id: str | None = None,
    **params: Any,
) -> requests.Response:
    body = {
        "model": "gpt_image_2_official",
        "params": {"prompt": prompt, **params},
        "out_task_id": out_task_id or new_id(),
    }
    return requests.post(
        f"{server.base_url}/api/openapi/submit", json=body, headers=AUTH, timeout=TIMEOUT
    )


def submit_ok(server: SimulatorServer, prompt: str = "a red fox", **params: Any) -> str:
    response = submit(server, prompt, **params)
    assert response.status_code == 200, response.text
    return str(response.json()["data"][0]["task_id"])


def get_task(server: SimulatorServer, task_id: str, **kwargs: Any) -> requests.Response:
    url = f"{server.base_url}/v1/tasks/{task_id}"
    return requests.get(url, headers={**AUTH, **kwargs.pop("headers", {})}, timeout=TIMEOUT)


def post_query(server: SimulatorServer, **keys: str) -> requests.Response:
    url = f"{server.base_url}/api/openapi/query"
    return requests.post(url, json=keys, headers=AUTH, timeout=TIMEOUT)


def wait_for(probe: Callable[[], T | None], timeout_s: float = 5.0) -> T:
    """Poll `probe` until it returns a value that is not None; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout_s} s")


def finished_task(server: SimulatorServer, task_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        data: dict[str, Any] = get_task(server, task_id).json()["data"]
        return data if data["completed_at"] is not None else None

    return wait_for(probe)


def decode_png(data: bytes) -> tuple[int, int]:
    """Check signature, chunk CRCs, header and the zlib stream; return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + payload) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, payload))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR"
    assert chunks[-1] == (b"IEND", b"")
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color) == (8, 2)  # 8-bit RGB
    raw = zlib.decompress(b"".join(payload for kind, payload in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    assert all(raw[row * (1 + 3 * width)] <= 4 for row in range(height))  # valid filter bytes
    return width, height


# --- submit -------------------------------------------------------------------------------------


def test_submit_answers_the_official_envelope(sim: SimulatorServer) -> None:
    """The default envelope is `{"code": 200, "data": [{status, task_id}]}`."""
    body = submit(sim).json()
    assert body["code"] == 200
    assert body["data"][0]["status"] == "submitted"
    assert TASK_ID.match(body["data"][0]["task_id"])


def test_submit_answers_the_platform_envelope(start_sim: StartSim) -> None:
    """`envelope="platform"` answers the statusCode envelope with out_task_id and credits."""
    server = start_sim(envelope="platform")
    out_task_id = new_id()
    body = submit(server, out_task_id=out_task_id).json()
    assert body["statusCode"] == 200
    assert body["message"] == ""
    data = body["data"]
    assert TASK_ID.match(data["task_id"])
    assert data["out_task_id"] == out_task_id
    assert data["status"] == "pending"
    assert data["estimated_credits"] == 100
    assert ISO_MS.match(data["created_at"])


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}]
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/openapi/submit"), ("POST", "/api/openapi/query"), ("GET", "/v1/tasks/x")],
)
def test_api_requires_the_bearer_key(
    sim: SimulatorServer, headers: dict[str, str], method: str, path: str
) -> None:
    """Every API endpoint answers 401 without the right bearer key."""
    response = requests.request(
        method, sim.base_url + path, json={}, headers=headers, timeout=TIMEOUT
    )
    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "message": "invalid api key"}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": "gpt_4o"}, "gpt_4o"),
        ({"model": None}, "model"),
        ({"out_task_id": None}, "out_task_id"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"aspect_ratio": "7:5"}, "7:5"),
        ({"resolution": "8K"}, "8K"),
        ({"quality": "ultra"}, "ultra"),
        ({"aspect_ratio": "1:1", "resolution": "4K"}, "1:1"),
        ({"aspect_ratio": "3:2", "resolution": "4K"}, "3:2"),
        ({"prompt": "a fox sim:bogus=1"}, "sim:bogus"),
        ({"prompt": "a fox sim:latency=soon"}, "sim:latency"),
    ],
)
def test_submit_rejects_bad_bodies_naming_the_value(
    sim: SimulatorServer, change: dict[str, Any], named: str
) -> None:
    """Invalid model, ids or params answer HTTP 400 with a message naming the offender."""
    body: dict[str, Any] = {
        "model": "gpt_image_2_official",
        "params": {"prompt": "a fox"},
        "out_task_id": new_id(),
    }
    for key, value in change.items():
        target = body if key in body else body["params"]
        if value is None:
            del target[key]
        else:
            target[key] = value
    url = f"{sim.base_url}/api/openapi/submit"
    response = requests.post(url, json=body, headers=AUTH, timeout=TIMEOUT)
    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert named in response.json()["message"]


def test_refused_combination_names_ratio_and_resolution(sim: SimulatorServer) -> None:
    """1:1 at 4K is refused with both halves of the combination in the message."""
    response = submit(sim, aspect_ratio="1:1", resolution="4K")
    assert response.status_code == 400
    assert "1:1" in response.json()["message"]
    assert "4K" in response.json()["message"]


def test_resubmit_returns_the_same_task_and_is_counted(sim: SimulatorServer) -> None:
    """A second submit of an out_task_id returns the first task, creates nothing, is counted."""
    out_task_id = new_id()
    first = submit(sim, out_task_id=out_task_id).json()["data"][0]["task_id"]
    second = submit(sim, out_task_id=out_task_id).json()["data"][0]["task_id"]
    assert first == second
    stats = sim.stats()
    assert stats["submits_by_out_task_id"][out_task_id] == 2
    assert [t for t in stats["tasks"].values() if t["out_task_id"] == out_task_id] == [
        stats["tasks"][first]
    ]


def test_unsafe_prompt_is_refused_inside_http_200(sim: SimulatorServer) -> None:
    """`sim:unsafe` answers HTTP 200 with body code 400, and no task exists afterwards."""
    out_task_id = new_id()
    response = submit(sim, "a fox sim:unsafe", out_task_id=out_task_id)
    assert response.status_code == 200
    assert response.json() == {"code": 400, "message": "prompt rejected by content safety review"}
    assert post_query(sim, out_task_id=out_task_id).status_code == 404


def test_unknown_params_pass_through_and_defaults_apply(sim: SimulatorServer) -> None:
    """Extra params are echoed unchanged; with no size params the image is 1:1 at 1K."""
    params = {"image_urls": ["https://example.invalid/a.png"], "seed": 7}
    task_id = submit_ok(sim, "a fox sim:latency=0", **params)
    data = finished_task(sim, task_id)
    assert data["input"] == {
        "model": "gpt_image_2_official",
        "params": {"prompt": "a fox sim:latency=0", **params},
    }
    image = requests.get(data["output"][0]["url"], timeout=TIMEOUT)
    assert decode_png(image.content) == (1024, 1024)


# --- submit faults ------------------------------------------------------------------------------


def test_submit429_answers_retry_after_then_accepts(sim: SimulatorServer) -> None:
    """`sim:submit429=2` gives two 429s with Retry-After and no task, then creates the task."""
    out_task_id, prompt = new_id(), "a fox sim:submit429=2 sim:retry_after=3"
    for _ in range(2):
        response = submit(sim, prompt, out_task_id=out_task_id)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.json() == {"code": 429, "message": "rate limited"}
        assert post_query(sim, out_task_id=out_task_id).status_code == 404
    assert submit(sim, prompt, out_task_id=out_task_id).status_code == 200
    assert sim.stats()["submits_by_out_task_id"][out_task_id] == 3


def test_submit429_default_retry_after_is_one_second(sim: SimulatorServer) -> None:
    """Without `sim:retry_after` the 429 says one second."""
    assert submit(sim, "a fox sim:submit429=1").headers["Retry-After"] == "1"


def test_submit503_answers_503_without_creating(sim: SimulatorServer) -> None:
    """`sim:submit503=1` gives one 503 and creates nothing, then accepts."""
    out_task_id, prompt = new_id(), "a fox sim:submit503=1"
    assert submit(sim, prompt, out_task_id=out_task_id).status_code == 503
    assert post_query(sim, out_task_id=out_task_id).status_code == 404
    assert submit(sim, prompt, out_task_id=out_task_id).status_code == 200


def test_submitdrop_creates_the_task_but_drops_the_answer(sim: SimulatorServer) -> None:
    """`sim:submitdrop=1`: the client gets a connection error, yet the task exists."""
    out_task_id, prompt = new_id(), "a fox sim:submitdrop=1"
    with pytest.raises(requests.ConnectionError):
        submit(sim, prompt, out_task_id=out_task_id)
    found = post_query(sim, out_task_id=out_task_id)
    assert found.status_code == 200
    task_id = found.json()["data"]["task_id"]
    assert submit(sim, prompt, out_task_id=out_task_id).json()["data"][0]["task_id"] == task_id


# --- query --------------------------------------------------------------------------------------


def test_query_by_get_and_post_agree(sim: SimulatorServer) -> None:
    """GET /v1/tasks/{id}, POST by task_id and POST by out_task_id give the same document,
    but for the credits, which (by default) only the POST query reports."""
    out_task_id = new_id()
    task_id = submit(sim, out_task_id=out_task_id).json()["data"][0]["task_id"]
    by_get = get_task(sim, task_id).json()
    by_post = post_query(sim, task_id=task_id).json()
    assert by_post["data"].pop("credits_used") == 0  # not completed yet
    assert by_post == by_get
    by_out_task_id = post_query(sim, out_task_id=out_task_id).json()
    assert by_out_task_id["data"].pop("credits_used") == 0
    assert by_out_task_id == by_get
    assert by_get["statusCode"] == 200
    data = by_get["data"]
    assert (data["task_id"], data["out_task_id"], data["status"]) == (
        task_id,
        out_task_id,
        "submitted",
    )
    assert ISO_MS.match(data["created_at"])
    assert (data["completed_at"], data["output"], data["error"]) == (None, [], None)


def test_unknown_task_answers_404(sim: SimulatorServer) -> None:
    """Unknown ids answer 404 "task not found" on every query route."""
    expected = {"statusCode": 404, "message": "task not found"}
    assert get_task(sim, "task_NOPE").json() == expected
    assert post_query(sim, task_id="task_NOPE").json() == expected
    response = post_query(sim, out_task_id=new_id())
    assert (response.status_code, response.json()) == (404, expected)


def test_query_without_ids_answers_400(sim: SimulatorServer) -> None:
    """A POST query with neither task_id nor out_task_id is a 400."""
    response = post_query(sim)
    assert response.status_code == 400
    assert "task_id" in response.json()["message"]


def test_disabled_v1_tasks_answers_404_for_every_id(start_sim: StartSim) -> None:
    """With `v1_tasks=False` the GET route is gone while the POST query still works."""
    server = start_sim(v1_tasks=False)
    task_id = submit_ok(server)
    response = get_task(server, task_id)
    assert response.status_code == 404
    assert response.json() == {"statusCode": 404, "message": "not found"}
    assert post_query(server, task_id=task_id).status_code == 200


def test_status_progresses_submitted_processing_completed(sim: SimulatorServer) -> None:
    """A task reports submitted, then processing, then completed with output; its credits are
    in the POST query's answer, not (by default) in the GET's."""
    task_id = submit_ok(sim, "a fox sim:latency=0.6")
    seen: list[str] = []

    def probe() -> dict[str, Any] | None:
        data: dict[str, Any] = get_task(sim, task_id).json()["data"]
        if not seen or seen[-1] != data["status"]:
            seen.append(data["status"])
        return data if data["status"] == "completed" else None

    data = wait_for(probe)
    assert seen == ["submitted", "processing", "completed"]
    assert ISO_MS.match(data["completed_at"])
    assert "credits_used" not in data
    assert post_query(sim, task_id=task_id).json()["data"]["credits_used"] == 100  # high 1K
    assert data["error"] is None
    assert data["output"] == [{"url": f"{sim.base_url}/files/{task_id}/0.png"}]


@pytest.mark.parametrize(
    ("quality", "resolution", "credits"), [("low", "1K", 10), ("medium", "2K", 60)]
)
def test_credits_by_quality_and_resolution_in_both_answers_on_request(
    start_sim: StartSim, quality: str, resolution: str, credits: int
) -> None:
    """With `credits_in_v1_tasks` the GET answer reports the made-up price too; before the
    task completes it reports 0; the POST queries are counted per task."""
    server = start_sim(credits_in_v1_tasks=True)
    task_id = submit_ok(server, "a fox sim:latency=0.3", quality=quality, resolution=resolution)
    assert get_task(server, task_id).json()["data"]["credits_used"] == 0

    def completed() -> dict[str, Any] | None:
        data: dict[str, Any] = get_task(server, task_id).json()["data"]
        return data if data["status"] == "completed" else None

    assert wait_for(completed)["credits_used"] == credits
    assert post_query(server, task_id=task_id).json()["data"]["credits_used"] == credits
    assert server.stats()["post_queries_by_task_id"] == {task_id: 1}


def test_fail_marker_finishes_failed_without_output(sim: SimulatorServer) -> None:
    """`sim:fail` ends as failed with the simulated error and no images."""
    task_id = submit_ok(sim, "a fox sim:fail sim:latency=0")
    data = finished_task(sim, task_id)
    assert (data["status"], data["error"], data["output"]) == (
        "failed",
        "simulated generation failure",
        [],
    )
    assert requests.get(f"{sim.base_url}/files/{task_id}/0.png", timeout=TIMEOUT).status_code == 404


def test_output_urls_follow_the_host_the_client_used(sim: SimulatorServer) -> None:
    """Image URLs are absolute, built from the request's Host header."""
    task_id = submit_ok(sim, "a fox sim:latency=0")
    data = get_task(sim, task_id, headers={"Host": "cdn.example.test:8443"}).json()["data"]
    assert data["output"][0]["url"] == f"http://cdn.example.test:8443/files/{task_id}/0.png"


def test_varied_status_words_come_from_the_synonym_groups(start_sim: StartSim) -> None:
    """`status_words="varied"` picks synonyms per task, and not always the same one."""
    server = start_sim(status_words="varied", seed=3)
    words = set()
    for _ in range(12):
        status = get_task(server, submit_ok(server, "a fox sim:latency=0")).json()["data"]["status"]
        assert status in SYNONYMS[Phase.COMPLETED]
        words.add(status)
    assert len(words) > 1
    pending = get_task(server, submit_ok(server)).json()["data"]["status"]
    assert pending in SYNONYMS[Phase.SUBMITTED]
    failed = get_task(server, submit_ok(server, "sim:fail sim:latency=0")).json()["data"]["status"]
    assert failed in SYNONYMS[Phase.FAILED]


# --- query faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "status"), [("poll429", 429), ("poll503", 503), ("pollgarbage", 200)]
)
def test_poll_fault_markers_answer_then_recover(
    sim: SimulatorServer, marker: str, status: int
) -> None:
    """The first query gets the fault (by GET), the next one (by POST) is a normal answer."""
    task_id = submit_ok(sim, f"a fox sim:{marker}=1 sim:retry_after=2")
    faulty = get_task(sim, task_id)
    assert faulty.status_code == status
    if marker == "poll429":
        assert faulty.headers["Retry-After"] == "2"
    if marker == "pollgarbage":
        assert faulty.text == "<html>bad gateway</html>"
        with pytest.raises(ValueError, match=r"(?i)json|expecting"):
            faulty.json()
    assert post_query(sim, task_id=task_id).json()["data"]["task_id"] == task_id
    assert sim.stats()["queries_by_task_id"][task_id] == 2


def test_polldrop_drops_the_connection_and_creates_nothing(sim: SimulatorServer) -> None:
    """`sim:polldrop=1`: the first query raises ConnectionError; tasks are unchanged."""
    task_id = submit_ok(sim, "a fox sim:polldrop=1")
    before = len(sim.stats()["tasks"])
    with pytest.raises(requests.ConnectionError):
        post_query(sim, task_id=task_id)
    assert get_task(sim, task_id).status_code == 200
    assert len(sim.stats()["tasks"]) == before


def test_several_poll_faults_are_served_in_order(sim: SimulatorServer) -> None:
    """429s come before 503s, each for its count, then normal answers."""
    task_id = submit_ok(sim, "a fox sim:poll503=1 sim:poll429=2")
    assert [get_task(sim, task_id).status_code for _ in range(4)] == [429, 429, 503, 200]


def test_global_fault_rates(start_sim: StartSim) -> None:
    """Rate 1.0 faults every request; drops hit queries but never submits."""
    always_503 = start_sim(fault_rate_503=1.0, seed=1)
    assert submit(always_503).status_code == 503
    always_drop = start_sim(fault_rate_drop=1.0, seed=1)
    task_id = submit_ok(always_drop)
    with pytest.raises(requests.ConnectionError):
        get_task(always_drop, task_id)


# --- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "resolution", "size"),
    [("16:9", "4K", (3840, 2160)), ("9:21", "1K", (864, 2016)), ("3:2", "2K", (2048, 1360))],
)
def test_images_are_valid_pngs_of_the_tabled_size(
    sim: SimulatorServer, ratio: str, resolution: str, size: tuple[int, int]
) -> None:
    """The served file decodes as a PNG of exactly the size table's pixels."""
    task_id = submit_ok(sim, "a fox sim:latency=0", aspect_ratio=ratio, resolution=resolution)
    url = finished_task(sim, task_id)["output"][0]["url"]
    image = requests.get(url, timeout=TIMEOUT)  # no Authorization: files are like a CDN
    assert image.headers["Content-Type"] == "image/png"
    assert decode_png(image.content) == size


def test_files_404_before_completion_and_for_unknown_ids(sim: SimulatorServer) -> None:
    """No image for an unfinished task, an unknown task, or an index past images_per_task."""
    pending = submit_ok(sim)
    done = submit_ok(sim, "a fox sim:latency=0")
    for path in (f"{pending}/0.png", "task_NOPE/0.png", f"{done}/1.png"):
        url = f"{sim.base_url}/files/{path}"
        assert requests.get(url, timeout=TIMEOUT).status_code == 404


def test_images_per_task(start_sim: StartSim) -> None:
    """`images_per_task=2` lists two URLs, both served."""
    server = start_sim(images_per_task=2)
    output = finished_task(server, submit_ok(server, "a fox sim:latency=0"))["output"]
    assert [item["url"].rsplit("/", 1)[1] for item in output] == ["0.png", "1.png"]
    for item in output:
        assert requests.get(item["url"], timeout=TIMEOUT).status_code == 200


# --- request delay, stats, processes ------------------------------------------------------------


def test_request_delay_does_not_serialise_requests(start_sim: StartSim) -> None:
    """20 concurrent requests delayed 0.2 s each finish together, far under 20 x 0.2 s."""
    server = start_sim(request_delay="fixed:0.2")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda _: get_task(server, "task_NOPE").status_code, range(20)))
    elapsed_s = time.monotonic() - started
    assert codes == [404] * 20
    assert 0.2 <= elapsed_s < 2.0
    started = time.monotonic()
    requests.get(f"{server.base_url}/files/task_NOPE/0.png", timeout=TIMEOUT)
    assert time.monotonic() - started < 0.2  # files are not API requests: no delay


def test_stats_and_reset(start_sim: StartSim) -> None:
    """Stats count requests and tasks, remember the peak of unfinished tasks; reset clears all."""
    server = start_sim()
    first, second = (submit_ok(server, "a fox sim:latency=0.2") for _ in range(2))
    wait_for(lambda: True if server.stats()["unfinished"] == 0 else None)
    started = time.time()
    third = submit_ok(server, "a fox sim:latency=30")
    get_task(server, third)
    stats = requests.get(f"{server.base_url}/_sim/stats", timeout=TIMEOUT).json()
    assert stats["max_concurrent_unfinished"] == 2
    assert stats["unfinished"] == 1
    assert stats["requests"] == 4
    assert stats["queries_by_task_id"] == {third: 1}
    assert set(stats["tasks"]) == {first, second, third}
    entry = stats["tasks"][third]
    assert entry["status"] == "submitted"
    assert entry["completed_at"] is None
    assert abs(entry["created_at"] - started) < 1.0
    assert entry["due_at"] == pytest.approx(entry["created_at"] + 30)
    assert stats["tasks"][first]["completed_at"] == pytest.approx(stats["tasks"][first]["due_at"])
    assert requests.post(f"{server.base_url}/_sim/reset", timeout=TIMEOUT).status_code == 200
    assert server.stats() == {
        "submits_by_out_task_id": {},
        "accepted_submits_by_out_task_id": {},
        "queries_by_task_id": {},
        "post_queries_by_task_id": {},
        "tasks": {},
        "requests": 0,
        "max_concurrent_unfinished": 0,
        "unfinished": 0,
    }
    assert get_task(server, third).status_code == 404


def test_simulator_runs_as_a_process_without_printing_the_key(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """`python -m simulator` announces its URL, serves, stops on SIGTERM, never prints the key."""
    process, base_url = start_simulator_process(
        ["--api-key", KEY, "--port", "0", "--latency", "fixed:0", "--envelope", "platform"]
    )
    try:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", base_url)
        body = {"model": "gpt_image_2_official", "params": {"prompt": "x"}, "out_task_id": "p1"}
        url = f"{base_url}/api/openapi/submit"
        response = requests.post(url, json=body, headers=AUTH, timeout=TIMEOUT)
        assert response.json()["data"]["out_task_id"] == "p1"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
    assert KEY not in "".join(capfd.readouterr())


def test_process_start_fails_loudly_on_bad_flags() -> None:
    """A simulator that exits before announcing itself raises instead of hanging."""
    with pytest.raises(RuntimeError, match="did not report"):
        start_simulator_process(["--api-key", KEY, "--latency", "soon"], timeout_s=10)


def test_file_markers_404_then_serve_and_pad() -> None:
    """sim:file404=N: N 404s, then the image; sim:filepad makes it larger and still valid."""
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:0")) as sim:
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {
            "model": "gpt_image_2_official",
            "params": {"prompt": "x sim:file404=2 sim:filepad=5000", "aspect_ratio": "1:1"},
            "out_task_id": "files-1",
        }
        task_id = requests.post(
            f"{sim.base_url}/api/openapi/submit", json=body, headers=headers, timeout=5
        ).json()["data"][0]["task_id"]
        url = f"{sim.base_url}/files/{task_id}/0.png"
        assert [requests.get(url, timeout=5).status_code for _ in range(2)] == [404, 404]
        image = requests.get(url, timeout=5)
        assert image.status_code == 200
        assert len(image.content) > 5000
        decoded = Image.open(io.BytesIO(image.content))
        decoded.load()  # decodes every pixel: the padding chunk is skipped as it should be
        assert decoded.size == (1024, 1024)


def test_fault_rates_change_while_running() -> None:
    """set_faults opens an outage window (every request 503) and closes it again."""
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:0")) as sim:
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {"model": "gpt_image_2_official", "params": {"prompt": "x"}, "out_task_id": "w"}
        url = f"{sim.base_url}/api/openapi/submit"
        sim.set_faults(rate_503=1.0)
        assert requests.post(url, json=body, headers=headers, timeout=5).status_code == 503
        sim.set_faults()
        assert requests.post(url, json=body, headers=headers, timeout=5).status_code == 200
        bad = requests.post(f"{sim.base_url}/_sim/faults", json={"rate_429": 2}, timeout=5)
        assert bad.status_code == 400


def test_accepted_submits_count_only_submits_the_platform_took() -> None:
    """A 503 then a retry: one accepted; a dropped answer then a blind retry: two (a double)."""
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:5")) as sim:
        headers = {"Authorization": f"Bearer {KEY}"}
        url = f"{sim.base_url}/api/openapi/submit"

        def post(out_task_id: str, prompt: str) -> None:
            body = {"model": "gpt_image_2_official", "params": {"prompt": prompt},
                    "out_task_id": out_task_id}  # fmt: skip
            with contextlib.suppress(requests.ConnectionError):
                requests.post(url, json=body, headers=headers, timeout=5)

        for _ in range(2):
            post("after-503", "x sim:submit503=1")
            post("after-drop", "x sim:submitdrop=1")
        stats = sim.stats()
        assert stats["submits_by_out_task_id"] == {"after-503": 2, "after-drop": 2}
        assert stats["accepted_submits_by_out_task_id"] == {"after-503": 1, "after-drop": 2}


def test_a_host_that_refuses_connections_comes_back_with_its_tasks(
    start_sim: StartSim,
) -> None:
    """`refuse_connections` takes the host down (no connection can be made); back on the same
    port after `accept_connections`, with the tasks it had."""
    server = start_sim()
    task_id = submit_ok(server)
    server.refuse_connections()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base_url}/v1/tasks/{task_id}", headers=AUTH, timeout=TIMEOUT)
    server.accept_connections()
    assert get_task(server, task_id).status_code == 200


def test_a_held_submit_creates_its_task_after_the_hold(start_sim: StartSim) -> None:
    """`sim:submitdelay=S` holds the first submit S seconds before the task exists."""
    server = start_sim()
    out_task_id = new_id()
    started = time.monotonic()
    response = submit(server, "a red fox sim:submitdelay=0.3", out_task_id=out_task_id)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert submit(server, "a red fox sim:submitdelay=0.3", out_task_id=out_task_id).ok
    assert server.stats()["accepted_submits_by_out_task_id"][out_task_id] == 2
