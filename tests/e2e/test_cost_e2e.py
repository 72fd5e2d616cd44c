"""What jobs and batches cost, against real workers, Redis and the simulator: credits recorded
per job and summed per batch, shown by the CLI and in the webhook payload; the follow-up query
when the poll answer lacks them (and none when the setting is off); `bulk --max-credits`;
`bulk --estimate`."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from standardwebhooks import Webhook

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer, free_port
from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.credits import MADE_UP_CREDITS
from imageq.simulator.server import SimulatorServer
from imageq.simulator.sim_config import SimConfig
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.payload import load_schema
from imageq.worker.domain.status import JobStatus
from imageq.worker.runtime import connect_store
from tests.conftest import API_KEY, WEBHOOK_SECRET, wait_for

SCHEMAS = Path(__file__).parents[2] / "cli" / "schemas"
WAIT_S = 60.0
LOW_1K = MADE_UP_CREDITS["low"]["1K"]
LOW_2K = MADE_UP_CREDITS["low"]["2K"]
MEDIUM_1K = MADE_UP_CREDITS["medium"]["1K"]


class Stack:
    """A simulator, a worker and a queue of their own (own Redis databases and key prefix)."""

    def __init__(self, values: dict[str, Any], simulator: SimulatorServer) -> None:
        self.values = values
        self.simulator = simulator
        self.settings = Settings(_env_file=None, **values)
        self.queue = ImageQueue(self.settings)
        self.env = {**os.environ, **settings_env(values)}

    def imageq(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imageq.cli", *args],
            env={**self.env, **env}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip


def _stack(
    settings_values: dict[str, Any],
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    db: int,
    credits_in_v1_tasks: bool,
    query_after_completion: bool,
) -> Iterator[Stack]:
    config = SimConfig(
        api_key=API_KEY, latency="fixed:0.4", seed=11, credits_in_v1_tasks=credits_in_v1_tasks
    )
    with SimulatorServer(config) as simulator:
        values = copy.deepcopy(settings_values)
        values["api"]["base_url"] = simulator.base_url
        values["redis"] |= {
            "broker_url": redis_server.url(db),
            "store_url": redis_server.url(db + 1),
            "key_prefix": f"cost{db}",
        }
        values["observability"]["metrics_port"] = free_port()
        values["worker"]["concurrency"] = 4
        values["cost"] = {
            "query_after_completion": query_after_completion,
            "default_job_credits": LOW_1K,
        }
        log_path = tmp_path_factory.mktemp(f"cost-worker-{db}") / "worker.log"
        with WorkerProcess(settings_env(values), log_path):
            yield Stack(values, simulator)


@pytest.fixture(scope="module")
def priced(
    settings_values: dict[str, Any],
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Credits in every poll answer."""
    yield from _stack(
        settings_values, redis_server, tmp_path_factory,
        db=4, credits_in_v1_tasks=True, query_after_completion=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def queried(
    settings_values: dict[str, Any],
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """No credits in the poll answer; the worker asks the query endpoint once."""
    yield from _stack(
        settings_values, redis_server, tmp_path_factory,
        db=6, credits_in_v1_tasks=False, query_after_completion=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def unqueried(
    settings_values: dict[str, Any],
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """No credits in the poll answer, and the follow-up query off."""
    yield from _stack(
        settings_values, redis_server, tmp_path_factory,
        db=8, credits_in_v1_tasks=False, query_after_completion=False,
    )  # fmt: skip


def validate(document: Any, schema_file: str) -> None:
    jsonschema.validate(document, json.loads((SCHEMAS / schema_file).read_text()))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def row(prompt: str, quality: str, resolution: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "aspect_ratio": "1:1", "resolution": resolution,
            "quality": quality, **extra}  # fmt: skip


def test_credits_per_job_and_batch_in_cli_and_payload(
    priced: Stack, receiver: WebhookReceiver, job_path: Path, tmp_path: Path
) -> None:
    """Three jobs of three prices: each records its credits, the batch sums them, and status,
    batches show and the webhook payload say so (each validated against its schema)."""
    hook = f"{receiver.base_url}{job_path}"
    file = write_rows(
        tmp_path / "priced.jsonl",
        [
            row("a", "low", "1K", webhook=hook),
            row("b", "low", "2K", webhook=hook),
            row("c", "medium", "1K", webhook=hook),
        ],
    )
    ran = priced.imageq("bulk", str(file), "--wait", "--json")
    assert ran.returncode == 0, ran.stderr
    done = json.loads(ran.stdout)
    validate(done, "bulk.json")
    batch_id = done["batch_id"]
    manifest = [json.loads(line) for line in Path(done["manifest"]).read_text().splitlines()]
    assert [entry["credits_used"] for entry in manifest] == [LOW_1K, LOW_2K, MEDIUM_1K]
    total = LOW_1K + LOW_2K + MEDIUM_1K

    status = json.loads(priced.imageq("status", batch_id, "--json").stdout)
    validate(status, "status.json")
    assert (status["credits_used"], status["max_credits"]) == (total, None)
    shown = json.loads(priced.imageq("batches", "show", batch_id, "--json").stdout)
    validate(shown, "batches-show.json")
    assert shown["credits_used"] == total
    assert [entry["credits_used"] for entry in shown["rows"]] == [LOW_1K, LOW_2K, MEDIUM_1K]
    listed = json.loads(priced.imageq("batches", "--json").stdout)
    validate(listed, "batches.json")
    assert {b["batch_id"]: b["credits_used"] for b in listed["batches"]}[batch_id] == total
    job = json.loads(priced.imageq("status", manifest[1]["job_id"], "--json").stdout)
    validate(job, "status.json")
    assert job["credits_used"] == LOW_2K
    text = priced.imageq("status", batch_id)
    assert str(total) in text.stdout  # the table's credits column
    page = tmp_path / "report.html"
    written = json.loads(priced.imageq("report", batch_id, "--html", str(page), "--json").stdout)
    validate(written, "report.json")
    assert written["batch"]["credits_used"] == total
    html = page.read_text()
    assert f"{total} credits" in html
    assert f"{LOW_2K} credits" in html  # the job's card

    hooks = wait_for(
        lambda: (found := receiver.for_path(str(job_path))) and len(found) == 3 and found,
        timeout_s=WAIT_S,
        what="three webhooks",
    )
    # The history the worker recorded prices the same file again, before anything is queued.
    again = priced.imageq("bulk", str(file), "--estimate", "--json",
                          IMAGEQ_COST__ESTIMATE_MIN_SAMPLES="1")  # fmt: skip
    estimate = json.loads(again.stdout)
    validate(estimate, "bulk.json")
    assert (estimate["credits"], estimate["enough_samples"]) == (total, True)
    assert estimate["job_seconds"] > 0

    credits = {}
    for received in hooks:
        payload = Webhook(WEBHOOK_SECRET).verify(received.body, received.headers)
        jsonschema.validate(payload, load_schema())
        credits[payload["job_id"]] = payload["credits_used"]
    assert credits == {entry["job_id"]: entry["credits_used"] for entry in manifest}


def _finish(stack: Stack, qualities: list[tuple[str, str]]) -> list[str]:
    ids = [
        stack.queue.enqueue(f"job {n}", aspect_ratio="1:1", resolution=res, quality=quality)
        for n, (quality, res) in enumerate(qualities)
    ]
    wait_for(
        lambda: all(stack.queue.get(job_id).is_terminal for job_id in ids),
        timeout_s=WAIT_S,
        what="the jobs to end",
    )
    return ids


def test_follow_up_query_when_the_poll_lacks_credits(queried: Stack) -> None:
    """The poll answer has no credits: one POST query per finished job learns them."""
    ids = _finish(queried, [("low", "1K"), ("medium", "1K")])
    jobs = [queried.queue.get(job_id) for job_id in ids]
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 2
    assert [job.credits_used for job in jobs] == [LOW_1K, MEDIUM_1K]
    posts = queried.simulator.stats()["post_queries_by_task_id"]
    assert [posts.get(str(job.remote_task_id)) for job in jobs] == [1, 1]


def test_no_query_and_no_credits_when_the_setting_is_off(unqueried: Stack) -> None:
    """The same answers without the setting: no query is made, and no credits are recorded."""
    ids = _finish(unqueried, [("low", "1K"), ("medium", "1K")])
    jobs = [unqueried.queue.get(job_id) for job_id in ids]
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 2
    assert [job.credits_used for job in jobs] == [None, None]
    posts = unqueried.simulator.stats()["post_queries_by_task_id"]
    assert not any(posts.get(str(job.remote_task_id)) for job in jobs)


@pytest.mark.parametrize("concurrency", [None, 2])
def test_max_credits_stops_submitting_at_the_budget(
    priced: Stack,
    receiver: WebhookReceiver,
    job_path: Path,
    tmp_path: Path,
    concurrency: int | None,
) -> None:
    """Six jobs of 10 credits under a budget of 35: three are submitted (30; a fourth would
    pass it), however many workers race; the other three end cancelled, reason budget, each
    notified once, and the manifest and batches show say which rows."""
    hook = f"{receiver.base_url}{job_path}"
    file = write_rows(tmp_path / "budget.jsonl", [row(f"r{n}", "low", "1K", webhook=hook)
                                                  for n in range(6)])  # fmt: skip
    paced = ["--concurrency", str(concurrency)] if concurrency else []
    ran = priced.imageq("bulk", str(file), "--max-credits", "35", *paced, "--wait", "--json")
    assert ran.returncode == 1, ran.stderr  # not all succeeded
    done = json.loads(ran.stdout)
    validate(done, "bulk.json")
    assert done["max_credits"] == 35
    manifest = [json.loads(line) for line in Path(done["manifest"]).read_text().splitlines()]
    outcome = Counter((entry["status"], entry["reason"]) for entry in manifest)
    assert outcome == {("succeeded", None): 3, ("cancelled", "budget"): 3}
    if concurrency:
        # Paced two at a time, rows are released in order: r0 and r1 first (20 credits), then r2
        # and r3 as those two end. r2 and r3 are then in flight together and their submits race
        # for the last 10 credits; whichever loses stops the batch, so r4 and r5 never go.
        reasons = [entry["reason"] for entry in manifest]
        assert reasons[:2] == [None, None], reasons
        assert set(reasons[2:4]) == {None, "budget"}, reasons
        assert reasons[4:] == ["budget", "budget"], reasons
    accepted = priced.simulator.stats()["accepted_submits_by_out_task_id"]
    assert sum(accepted.get(entry["job_id"], 0) for entry in manifest) == 3
    shown = json.loads(priced.imageq("batches", "show", done["batch_id"], "--json").stdout)
    validate(shown, "batches-show.json")
    assert (shown["credits_used"], shown["budget_reached"]) == (3 * LOW_1K, True)
    assert sorted(e["line"] for e in shown["rows"] if e["reason"] == "budget") == sorted(
        e["line"] for e in manifest if e["reason"] == "budget"
    )
    ids = [entry["job_id"] for entry in manifest]
    wait_for(
        lambda: all(priced.queue.get(job_id).webhook_state == Delivery.SENT for job_id in ids),
        timeout_s=WAIT_S,
        what="every webhook sent",
    )
    ids_sent = Counter(hook.headers["webhook-id"] for hook in receiver.for_path(str(job_path)))
    assert sorted(ids_sent.values()) == [1] * 6


def test_estimate_sums_the_medians_and_queues_nothing(
    settings_values: dict[str, Any], redis_server: RedisServer, tmp_path: Path
) -> None:
    """`bulk --estimate` over recorded samples: per row its group's median, summed; a group
    with too few samples is named; nothing is queued."""
    values = copy.deepcopy(settings_values)
    values["redis"] |= {"store_url": redis_server.url(10), "key_prefix": "estimate"}
    stack_env = {**os.environ, **settings_env(values)}
    store = connect_store(Settings(_env_file=None, **values))
    for credits, seconds in [(10, 1.0), (14, 3.0), (12, 2.0)]:
        store.add_credit_sample("low", "1K", credits, window=50)
        store.add_generation_sample("low", "1K", seconds, window=50)
    store.add_credit_sample("medium", "2K", 60, window=50)
    store.add_generation_sample("medium", "2K", 8.0, window=50)
    file = write_rows(
        tmp_path / "estimate.jsonl",
        [row("a", "low", "1K"), row("b", "low", "1K"), row("c", "medium", "2K")],
    )

    def estimate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imageq.cli", "bulk", str(file), "--estimate", *args],
            env={**stack_env, **env}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    ran = estimate("--concurrency", "2", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    validate(result, "bulk.json")
    assert result["credits"] == 2 * 12 + 60
    assert result["job_seconds"] == 2 * 2.0 + 8.0
    assert result["wall_s"] == 8.0  # 12 s over 2 at once, but the medium job alone takes 8
    assert result["enough_samples"] is False
    assert [(g["quality"], g["samples"], g["enough_samples"]) for g in result["groups"]] == [
        ("low", 3, True),
        ("medium", 1, False),
    ]
    text = estimate()
    assert "too few samples for medium 2K: 1 recent job(s), 3 wanted" in text.stderr
    assert "expected: 84 credits" in text.stdout
    enough = json.loads(estimate("--json", IMAGEQ_COST__ESTIMATE_MIN_SAMPLES="1").stdout)
    assert enough["enough_samples"] is True
    assert enough["credits"] == result["credits"]
    assert ImageQueue(Settings(_env_file=None, **values)).jobs().items == []  # nothing queued
