"""Finding work again, against a real worker, Redis and simulator: `imageq jobs` (by status,
batch, time range, in pages), `imageq batches` and `batches show --manifest`, the listing
indexes kept in step with every transition, and bulk runs: fire-and-forget returns at once and
paces itself in Redis, refused rows are printed, Ctrl-C says how to resume."""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import redis

from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from imageq.worker.domain.job import Job
from imageq.worker.domain.payload import iso_time
from imageq.worker.domain.status import TERMINAL_JOB_STATUSES, JobStatus
from imageq.worker.store.job_index import list_jobs
from imageq.worker.store.job_store import JobStore
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

STATUSES = [str(status) for status in JobStatus]


@pytest.fixture(scope="module")
def cli_env(settings_values: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, **settings_env(settings_values)}


def imageq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imageq.cli", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def as_json(result: subprocess.CompletedProcess[str], schema: str) -> dict[str, Any]:
    """The command's one JSON object, checked against its schema file."""
    assert result.returncode in (0, 1), result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    text = resources.files("imageq.cli").joinpath("schemas", f"{schema}.json").read_text()
    jsonschema.validate(value, json.loads(text))
    return value


@pytest.fixture(scope="module")
def finished(worker: WorkerProcess, queue: ImageQueue) -> dict[str, Any]:
    """Two batches a moment apart (the first one's jobs all created at one time, one of them
    failing), and a held job that stays queued; all but the held one finished."""
    since = time.time()
    first = queue.enqueue_many(
        [
            {"prompt": f"castle {n}", "aspect_ratio": "1:1", "resolution": "1K",
             "metadata": {"n": n}}
            for n in range(5)
        ] + [{"prompt": "sim:fail", "aspect_ratio": "1:1", "resolution": "1K"}],
    )  # fmt: skip
    between = time.time()
    second = queue.enqueue_many(
        [{"prompt": "lake", "aspect_ratio": "2:1", "resolution": "1K"}], name="second"
    )
    held = queue.enqueue_many(
        [{"prompt": "held", "aspect_ratio": "1:1", "resolution": "1K"}], hold=True
    )
    for batch_id in (first.batch_id, second.batch_id):
        complete = functools.partial(lambda batch_id: queue.batch(batch_id).is_complete, batch_id)
        wait_for(complete, timeout_s=30, what=f"batch {batch_id}")
    return {"since": since, "between": between, "first": first, "second": second, "held": held}


def list_all(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    """Every page of `imageq jobs ARGS --limit 2`, in order."""
    rows: list[dict[str, Any]] = []
    cursor: list[str] = []
    for _ in range(50):
        page = as_json(imageq(env, "jobs", *args, "--limit", "2", *cursor, "--json"), "jobs")
        assert page["count"] == len(page["jobs"]) <= 2
        rows += page["jobs"]
        if page["next_cursor"] is None:
            return rows
        cursor = ["--cursor", page["next_cursor"]]
    pytest.fail("the listing did not end")


def test_jobs_by_batch_status_and_time(cli_env: dict[str, str], finished: dict[str, Any]) -> None:
    """--batch lists that batch's jobs; --status only those statuses (repeatable);
    --since/--until only jobs created in the range; newest first."""
    first, second, held = finished["first"], finished["second"], finished["held"]
    since = iso_time(finished["since"])
    assert since is not None
    by_batch = as_json(imageq(cli_env, "jobs", "--batch", first.batch_id, "--json"), "jobs")
    assert sorted(row["job_id"] for row in by_batch["jobs"]) == sorted(first.jobs.values())
    assert {row["prompt"] for row in by_batch["jobs"]} >= {"castle 0", "sim:fail"}

    failed = as_json(
        imageq(cli_env, "jobs", "--status", "failed", "--since", since, "--json"), "jobs"
    )
    assert [row["job_id"] for row in failed["jobs"]] == [first.jobs[6]]
    assert failed["jobs"][0]["error"]["message"]

    both = imageq(cli_env, "jobs", "--status", "failed", "--status", "queued", "--since", since,
                  "--json")  # fmt: skip
    rows = as_json(both, "jobs")["jobs"]
    assert [row["job_id"] for row in rows] == [held.jobs[1], first.jobs[6]]  # newest first
    assert [row["status"] for row in rows] == ["queued", "failed"]

    until = iso_time(finished["between"])
    assert until is not None
    early = as_json(imageq(cli_env, "jobs", "--since", since, "--until", until, "--json"), "jobs")
    assert sorted(row["job_id"] for row in early["jobs"]) == sorted(first.jobs.values())
    late = as_json(imageq(cli_env, "jobs", "--since", until, "--json"), "jobs")
    assert {row["job_id"] for row in late["jobs"]} >= {second.jobs[1], held.jobs[1]}
    assert not {row["job_id"] for row in late["jobs"]} & set(first.jobs.values())
    recent = as_json(imageq(cli_env, "jobs", "--since", "10m", "--batch", second.batch_id,
                            "--json"), "jobs")  # fmt: skip
    assert [row["job_id"] for row in recent["jobs"]] == [second.jobs[1]]

    bad = imageq(cli_env, "jobs", "--since", "yesterday-ish")
    assert bad.returncode == 2
    assert "ISO 8601" in bad.stderr


def test_pages_list_each_job_exactly_once(
    cli_env: dict[str, str], finished: dict[str, Any]
) -> None:
    """Pages of 2 over jobs that share a creation time: together, each job exactly once."""
    since = iso_time(finished["since"])
    assert since is not None
    expected = {
        *finished["first"].jobs.values(),
        *finished["second"].jobs.values(),
        *finished["held"].jobs.values(),
    }
    rows = list_all(cli_env, "--since", since)
    ids = [row["job_id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) >= expected
    created = [row["created_at"] for row in rows]
    assert created == sorted(created, reverse=True)
    in_batch = list_all(cli_env, "--batch", finished["first"].batch_id)
    assert sorted(row["job_id"] for row in in_batch) == sorted(finished["first"].jobs.values())


def test_indexes_follow_every_transition(
    store_redis: redis.Redis, queue: ImageQueue, finished: dict[str, Any]
) -> None:
    """Each indexed job is in the index of its record's status and of no other, with its
    creation time as score; a cancelled held job moves from queued to cancelled."""
    (held_id,) = finished["held"].jobs.values()
    assert queue.cancel(held_id)
    indexed = store_redis.zrangebyscore("imageq:idx:jobs", finished["since"], "+inf")
    ids = [str(member, "utf-8") for member in cast(list[bytes], indexed)]
    assert held_id in ids
    for job_id in ids:
        job = queue.get(job_id)
        member_of = [s for s in STATUSES if store_redis.zscore(f"imageq:idx:status:{s}", job_id)]
        assert member_of == [str(job.status)], job_id
        score = store_redis.zscore(f"imageq:idx:status:{job.status}", job_id)
        assert score == pytest.approx(job.created_at, abs=1e-3)
    assert store_redis.ttl("imageq:idx:jobs") > 0
    assert store_redis.ttl("imageq:idx:status:cancelled") > 0


def test_batches_and_show_writes_the_manifest(
    cli_env: dict[str, str], finished: dict[str, Any], tmp_path: Path
) -> None:
    """batches lists the batches newest first with counts and progress; batches show ID
    --manifest writes the rows with prompt, metadata and final status."""
    first, second = finished["first"], finished["second"]
    since = iso_time(finished["since"])
    assert since is not None
    listed = as_json(imageq(cli_env, "batches", "--since", since, "--json"), "batches")
    ids = [row["batch_id"] for row in listed["batches"]]
    assert ids.index(second.batch_id) < ids.index(first.batch_id)  # newest first
    row = listed["batches"][ids.index(first.batch_id)]
    assert (row["total"], row["finished"], row["progress"], row["complete"]) == (6, 6, 1.0, True)
    assert row["counts"]["succeeded"] == 5
    assert row["counts"]["failed"] == 1

    path = tmp_path / "first.jsonl"
    show = imageq(cli_env, "batches", "show", first.batch_id, "--manifest", str(path), "--json")
    shown = as_json(show, "batches-show")
    assert shown["manifest"] == str(path)
    assert shown["summary"]["succeeded"] == 5
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries == shown["rows"]
    assert [entry["line"] for entry in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[2]["prompt"] == "castle 2"
    assert entries[2]["metadata"] == {"n": 2}
    assert entries[2]["status"] == "succeeded"
    assert entries[2]["outputs"][0]["url"]
    assert entries[2]["created_at"].endswith("Z")
    assert (entries[5]["status"], entries[5]["error"]["type"]) == ("failed", "JobError")

    people = imageq(cli_env, "batches", "show", first.batch_id)
    assert people.returncode == 0, people.stderr
    assert "castle 2" in people.stdout
    assert "6/6 finished" in people.stdout
    assert imageq(cli_env, "batches", "show", "no-such-batch").returncode == 3


def test_fire_and_forget_bulk_returns_at_once_and_paces_itself(
    cli_env: dict[str, str], worker: WorkerProcess, queue: ImageQueue, tmp_path: Path
) -> None:
    """bulk without --wait, paced 1 at a time: returns within a couple of seconds, writes no
    file beside the input, prints the refused row with its reason; the batch then runs one
    job at a time with no command running."""
    path = tmp_path / "paced.jsonl"
    rows = [{"prompt": f"fox {n} sim:latency=0.5", "aspect_ratio": "1:1", "resolution": "1K"}
            for n in range(4)]  # fmt: skip
    rows.insert(1, {"prompt": "bad", "aspect_ratio": "7:3", "resolution": "1K"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    started = time.monotonic()
    result = imageq(cli_env, "bulk", str(path), "--concurrency", "1", "--json")
    took_s = time.monotonic() - started
    assert result.returncode == 1, result.stderr  # a row was refused
    assert took_s < 5, took_s
    summary = as_json(result, "bulk")
    assert summary["manifest"] is None
    assert summary["queued"] == 4
    assert [row["line"] for row in summary["refused"]] == [2]
    assert summary["refused"][0]["reason"].startswith("aspect_ratio: '7:3' is not one of")
    assert sorted(tmp_path.iterdir()) == [path]
    batch_id = summary["batch_id"]
    assert f"--batch-id {batch_id}" in summary["resume"]
    wait_for(lambda: queue.batch(batch_id).is_complete, timeout_s=60, what="the paced batch")
    jobs = sorted(queue.batch_jobs(batch_id).values(), key=lambda job: job.submitted_at or 0)
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 4
    for before, after in itertools.pairwise(jobs):
        assert (after.submitted_at or 0) >= (before.finished_at or 0)  # one at a time
    assert sorted(tmp_path.iterdir()) == [path]
    shown = as_json(imageq(cli_env, "batches", "show", batch_id, "--json"), "batches-show")
    assert [(row["line"], row["status"]) for row in shown["rows"]] == [
        (1, "succeeded"), (2, "invalid"), (3, "succeeded"), (4, "succeeded"), (5, "succeeded"),
    ]  # fmt: skip


def interruptible() -> None:
    """In the child before exec: Ctrl-C back to its default. A suite started in the background
    by a shell without job control inherits SIGINT ignored, and so would the command."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_says_the_jobs_keep_running_and_how_to_resume(
    cli_env: dict[str, str], worker: WorkerProcess, queue: ImageQueue, tmp_path: Path
) -> None:
    """Ctrl-C while following: exit 130, the message says the jobs keep running and prints
    the resume command; that command finishes the batch, submitting nothing twice."""
    path = tmp_path / "slow.jsonl"
    rows = [{"prompt": f"slow {n} sim:latency=2", "aspect_ratio": "1:1", "resolution": "1K"}
            for n in range(2)]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = [sys.executable, "-m", "imageq.cli", "bulk", str(path), "--batch-id", "ctrl-c-1",
               "--wait", "--interval", "0.1"]  # fmt: skip
    follow = subprocess.Popen(
        command, env=cli_env, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )
    try:
        # Both submitted: the command has queued them all and is following the batch.
        running = [JobStatus.SUBMITTED] * 2
        wait_for(
            lambda: [job.status for job in queue.batch_jobs("ctrl-c-1").values()] == running,
            timeout_s=30,
            what="the batch's jobs to be submitted",
        )
        follow.send_signal(signal.SIGINT)
        _, stderr = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 130, stderr
    assert "keep running in the workers" in " ".join(stderr.split())
    resume = f"imageq bulk {path} --batch-id ctrl-c-1 --wait"
    assert resume in stderr
    again = imageq(cli_env, *resume.split()[1:], "--json")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""  # with --json, all of it is in the one object
    done = as_json(again, "bulk")
    assert (done["queued"], done["already_known"]) == (0, 2)
    assert done["summary"]["succeeded"] == 2
    assert done["manifest"] == str(tmp_path / "slow.ctrl-c-1.manifest.jsonl")
    assert {job.status for job in queue.batch_jobs("ctrl-c-1").values()} <= TERMINAL_JOB_STATUSES


def test_ctrl_c_with_json_is_one_error_object(
    cli_env: dict[str, str], worker: WorkerProcess, queue: ImageQueue, tmp_path: Path
) -> None:
    """Ctrl-C with --json: exit 130 and one error object on stderr, typed `interrupted`, that
    names the resume command."""
    path = tmp_path / "slow.jsonl"
    row = {"prompt": "slow sim:latency=2", "aspect_ratio": "1:1", "resolution": "1K"}
    path.write_text(json.dumps(row) + "\n")
    command = [sys.executable, "-m", "imageq.cli", "bulk", str(path), "--batch-id", "ctrl-c-2",
               "--wait", "--json"]  # fmt: skip
    follow = subprocess.Popen(
        command, env=cli_env, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )
    try:
        wait_for(
            lambda: (
                [job.status for job in queue.batch_jobs("ctrl-c-2").values()]
                == [JobStatus.SUBMITTED]
            ),
            timeout_s=30,
            what="the batch's job to be submitted",
        )
        follow.send_signal(signal.SIGINT)
        _, stderr = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 130, stderr
    # Its stderr: the error object, beside the log lines these tests ask for (JSON logs).
    objects = [json.loads(line) for line in stderr.splitlines()]
    [error] = [value for value in objects if "error" in value]
    assert all("event" in value for value in objects if value is not error)
    text = resources.files("imageq.cli").joinpath("schemas", "error.json").read_text()
    jsonschema.validate(error, json.loads(text))
    assert error["error"]["type"] == "interrupted"
    assert f"imageq bulk {path} --batch-id ctrl-c-2 --wait" in error["error"]["message"]


def test_indexes_are_trimmed_to_the_record_ttl_and_skip_gone_records(
    store_redis: redis.Redis,
) -> None:
    """An entry created longer ago than the record TTL is trimmed by the next write to its
    index; every index expires with the TTL; a listing passes over a record already gone."""
    store = JobStore(store_redis, prefix="trim", ttl_s=30)
    now = time.time()
    params = {"prompt": "p", "aspect_ratio": "1:1", "resolution": "1K", "quality": "high"}
    store.create(Job("old", params, created_at=now - 60, batch_id="tb"))
    store.create(Job("new", params, created_at=now, batch_id="tb"))
    store.create(Job("zz-gone", params, created_at=now, batch_id="tb"))
    for key in ("trim:idx:jobs", "trim:idx:status:queued", "trim:idx:batch:tb"):
        assert store_redis.zscore(key, "old") is None, key
        assert store_redis.zscore(key, "new") is not None, key
        assert 0 < store_redis.ttl(key) <= 30
    store_redis.delete(store.key("zz-gone"))  # as its TTL would; listed first, it is passed over
    page = list_jobs(store, statuses=[JobStatus.QUEUED], limit=1)
    assert [job.job_id for job in page.items] == ["new"]
    assert page.next_cursor is None
