"""The simulator serves each job its own picture: the prompt, ratio, resolution and pixel size
drawn on it, the same bytes on every download (a real server on loopback)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from imageq.simulator.picture import Caption, caption_png
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig

KEY = "sk-test-simulator-images"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = (2.0, 10.0)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(api_key=KEY, latency="fixed:0", images_per_task=2)) as server:
        yield server


def output_urls(server: SimulatorServer, prompt: str, **params: Any) -> list[str]:
    """Submit a job and return its image URLs once it has finished."""
    body = {
        "model": "gpt_image_2_official",
        "params": {"prompt": prompt, **params},
        "out_task_id": f"out-{time.monotonic_ns()}",
    }
    submitted = requests.post(
        f"{server.base_url}/api/openapi/submit", json=body, headers=AUTH, timeout=TIMEOUT
    )
    task_id = submitted.json()["data"][0]["task_id"]
    give_up = time.monotonic() + 5
    while time.monotonic() < give_up:
        data = requests.get(
            f"{server.base_url}/v1/tasks/{task_id}", headers=AUTH, timeout=TIMEOUT
        ).json()["data"]
        if data["completed_at"] is not None:
            return [item["url"] for item in data["output"]]
        time.sleep(0.02)
    raise AssertionError("the simulator's task did not finish within 5 s")


def test_each_image_is_its_jobs_caption(sim: SimulatorServer) -> None:
    """Both images of a job are the captions of that job (prompt, ratio, resolution, pixels,
    which image), and a second download gives the same bytes."""
    prompt = "A lighthouse in a storm, oil painting"
    urls = output_urls(sim, prompt, aspect_ratio="9:16", resolution="1K")
    for index, url in enumerate(urls):
        served = requests.get(url, timeout=TIMEOUT).content
        expected = caption_png(Caption(prompt, "9:16", "1K", 864, 1536, index=index, count=2))
        assert served == expected
        assert requests.get(url, timeout=TIMEOUT).content == served
        assert Image.open(io.BytesIO(served)).size == (864, 1536)
    assert len(urls) == 2


def test_jobs_with_other_parameters_get_other_images(sim: SimulatorServer) -> None:
    """The same prompt at two ratios, and two prompts at one ratio: three different files."""
    files = {
        requests.get(output_urls(sim, prompt, aspect_ratio=ratio)[0], timeout=TIMEOUT).content
        for prompt, ratio in (("a fox", "1:1"), ("a fox", "3:2"), ("a hare", "1:1"))
    }
    assert len(files) == 3
