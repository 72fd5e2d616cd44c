"""The `imageq` command line against a real worker, Redis and simulator: exit codes, bulk
runs with manifests and resume, status, watch, cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imageq.devenv.webhook_receiver import WebhookReceiver
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.simulator.server import SimulatorServer
from imageq.worker.domain.job import Delivery
from imageq.worker.domain.status import JobStatus
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cli_env(settings_values: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **settings_env(settings_values)}


def imageq(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imageq.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_submit_wait_succeeds_with_exit_0(worker: WorkerProcess, cli_env: dict[str, str]) -> None:
    """submit --wait --json: exit 0 and the completion payload."""
    result = imageq(cli_env, "submit", "a castle", "-r", "16:9", "-s", "2K", "-m", "k=v",
                    "--wait", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "succeeded"
    assert payload["metadata"] == {"k": "v"}
    assert payload["outputs"][0]["width"] == 2048


def test_submit_invalid_exits_2_naming_allowed_values(cli_env: dict[str, str]) -> None:
    """1:1 at 4K: exit 2, the message names the ratios 4K allows; nothing printed on stdout."""
    result = imageq(cli_env, "submit", "a castle", "-r", "1:1", "-s", "4K")
    assert result.returncode == 2
    assert "16:9, 9:16, 2:1, 1:2, 21:9, 9:21" in result.stderr
    assert result.stdout == ""


def test_submit_failed_job_exits_1(worker: WorkerProcess, cli_env: dict[str, str]) -> None:
    """A job that fails remotely: exit 1, and the reason shown."""
    result = imageq(cli_env, "submit", "sim:fail", "-r", "1:1", "-s", "1K", "--wait")
    assert result.returncode == 1
    assert "simulated generation failure" in result.stdout


def test_status_of_unknown_id_exits_3(cli_env: dict[str, str]) -> None:
    """No such job or batch: exit 3."""
    assert imageq(cli_env, "status", "no-such-thing").returncode == 3


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {status: count for status, count in counts.items() if count}


JSONL = """\
{"prompt": "castle at dusk", "aspect_ratio": "16:9", "resolution": "1K"}
{"prompt": "bad ratio", "aspect_ratio": "7:3", "resolution": "1K"}

{"prompt": "fox", "aspect_ratio": "4:5", "resolution": "2K", "quality": "low", "metadata": {"n": 1}}
{"prompt": "too big", "aspect_ratio": "1:1", "resolution": "4K"}
not json at all
{"prompt": "city", "aspect_ratio": "21:9", "resolution": "4K", "job_id": "cli-city-1"}
"""
CSV = """\
prompt,aspect_ratio,resolution,quality,metadata.order
castle,16:9,1K,high,1
,1:1,1K,high,2
"lake, misty",3:2,2K,medium,3
fox,1:1,8K,high,4
"""


@pytest.mark.parametrize(
    ("name", "text", "valid_lines", "invalid_lines"),
    [("jobs.jsonl", JSONL, [1, 4, 7], [2, 5, 6]), ("jobs.csv", CSV, [2, 4], [3, 5])],
)
def test_bulk_runs_valid_rows_reports_invalid_and_writes_manifest(
    worker: WorkerProcess,
    cli_env: dict[str, str],
    tmp_path: Path,
    name: str,
    text: str,
    valid_lines: list[int],
    invalid_lines: list[int],
) -> None:
    """Valid rows complete; invalid ones are reported by line and skipped; manifest complete."""
    path = tmp_path / name
    path.write_text(text)
    manifest = tmp_path / "manifest.jsonl"
    result = imageq(cli_env, "bulk", str(path), "--wait", "--manifest", str(manifest), "--json")
    assert result.returncode == 1, result.stderr  # rows were skipped
    refused = json.loads(result.stdout)["refused"]  # with --json, in the one object
    assert [row["line"] for row in refused] == invalid_lines
    assert all(row["reason"] for row in refused)
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [entry["line"] for entry in entries] == sorted(valid_lines + invalid_lines)
    by_line = {entry["line"]: entry for entry in entries}
    for line in valid_lines:
        assert by_line[line]["status"] == "succeeded"
        assert by_line[line]["outputs"][0]["url"]
    for line in invalid_lines:
        assert by_line[line]["status"] == "invalid"
        assert by_line[line]["error"]["message"]
    summary = nonzero(json.loads(result.stdout)["summary"])
    assert summary == {"succeeded": len(valid_lines), "invalid": len(invalid_lines)}


def test_bulk_resume_submits_nothing_twice(
    worker: WorkerProcess, cli_env: dict[str, str], simulator: SimulatorServer, tmp_path: Path
) -> None:
    """The same file and batch id again: every job is known, none is submitted again."""
    path = tmp_path / "resume.jsonl"
    path.write_text("".join(
        json.dumps({"prompt": f"castle {n}", "aspect_ratio": "1:1", "resolution": "1K"}) + "\n"
        for n in range(4)
    ))  # fmt: skip
    first = imageq(cli_env, "bulk", str(path), "--batch-id", "resume-1", "--wait", "--json")
    assert first.returncode == 0, first.stderr
    again = imageq(cli_env, "bulk", str(path), "--batch-id", "resume-1", "--wait", "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["queued"], json.loads(again.stdout)["already_known"]) == (0, 4)
    counts = simulator.stats()["submits_by_out_task_id"]
    assert [counts[f"resume-1-{line:06d}"] for line in range(1, 5)] == [1, 1, 1, 1]


def test_bulk_with_concurrency_paces_and_completes(
    worker: WorkerProcess, cli_env: dict[str, str], settings_values: dict[str, Any], tmp_path: Path
) -> None:
    """--concurrency 2 holds jobs back and releases them as others end; all complete."""
    path = tmp_path / "paced.jsonl"
    path.write_text("".join(
        json.dumps({"prompt": f"lake {n}", "aspect_ratio": "2:1", "resolution": "1K"}) + "\n"
        for n in range(5)
    ))  # fmt: skip
    result = imageq(cli_env, "bulk", str(path), "--batch-id", "paced-1", "--concurrency", "2",
                    "--wait", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert nonzero(json.loads(result.stdout)["summary"]) == {"succeeded": 5}
    from imageq.config import Settings

    queue = ImageQueue(Settings(_env_file=None, **settings_values))
    jobs = sorted(queue.batch_jobs("paced-1").values(), key=lambda job: job.created_at)
    starts = sorted(job.submitted_at or 0 for job in jobs)
    ends = sorted(job.finished_at or 0 for job in jobs)
    # Never more than 2 at once: the third job started only after the first one ended.
    assert starts[2] >= ends[0]


def test_cancel_stops_polling_and_notifies_once(
    worker: WorkerProcess,
    cli_env: dict[str, str],
    queue: ImageQueue,
    simulator: SimulatorServer,
    receiver: WebhookReceiver,
    job_path: Path,
) -> None:
    """cancel: status cancelled, webhook once, and the job's polling stops."""
    job_id = queue.enqueue(
        "a castle sim:latency=30", aspect_ratio="1:1", resolution="1K",
        webhook_url=f"{receiver.base_url}{job_path}",
    )  # fmt: skip
    wait_for(lambda: queue.get(job_id).poll_count >= 1, timeout_s=10, what="polling")
    result = imageq(cli_env, "cancel", job_id)
    assert result.returncode == 0, result.stderr
    assert "cancelled 1 job(s)" in result.stdout
    job = queue.get(job_id)
    assert job.status is JobStatus.CANCELLED
    wait_for(lambda: queue.get(job_id).webhook_state == Delivery.SENT, timeout_s=10, what="hook")
    # A later job's whole life spans several poll intervals: the cancelled chain has run out.
    queue.wait(queue.enqueue("later", aspect_ratio="1:1", resolution="1K"), timeout_s=15)
    queries = simulator.stats()["queries_by_task_id"][job.remote_task_id]
    assert queries <= job.poll_count + 1
    assert len(receiver.for_path(str(job_path))) == 1
    assert json.loads(receiver.for_path(str(job_path))[0].body)["status"] == "cancelled"
    assert imageq(cli_env, "cancel", job_id).returncode == 1  # nothing left to cancel


def test_watch_json_follows_a_job_to_its_end(
    worker: WorkerProcess, cli_env: dict[str, str], queue: ImageQueue
) -> None:
    """watch --json prints a line per change and exits 0 when the job succeeds."""
    # Held until the watch is up, so the test does not race the command's start-up.
    report = queue.enqueue_many(
        [{"prompt": "a castle", "aspect_ratio": "1:1", "resolution": "1K"}], hold=True
    )
    (job_id,) = report.jobs.values()
    interval = ["--interval", "0.1"]
    watch = subprocess.Popen(
        [sys.executable, "-m", "imageq.cli", "watch", job_id, "--json", *interval],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())
        assert first["status"] == "queued"
        assert queue.release(job_id)
        rest, errors = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert watch.returncode == 0, errors
    states = [first["status"]] + [json.loads(line)["status"] for line in rest.splitlines()]
    assert states[0] == "queued"
    assert states[-1] == "succeeded"
