"""Nothing scheduled disappears silently: a real beat with the schedule file and a real worker
without it. The tick fails loudly (an error line, the metric, a record), and `imageq schedules`
and `imageq health`, run as users run them and without the schedule file in their own
environment, show it; with a worker that holds the file, `imageq schedules` shows the batch.

Beat and workers run on databases and queues of their own, so no other test's worker takes
their ticks or answers their pings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from imageq.config import Settings
from imageq.devenv.redis_server import RedisServer, free_port
from imageq.devenv.worker_process import BeatProcess, WorkerProcess, settings_env
from imageq.producers.scheduling.schedule_records import ScheduleRecords, Tick
from tests.conftest import API_KEY, wait_for
from tests.unit.test_schedule import run_table

SCHEMAS = Path(__file__).resolve().parents[2] / "cli" / "schemas"
EVERY_S = 2
ROWS = [
    {"prompt": "lighthouse at dusk", "aspect_ratio": "16:9", "resolution": "1K"},
    {"prompt": "fox in snow", "aspect_ratio": "1:1", "resolution": "1K", "quality": "low"},
]
BROKER_DB, STORE_DB = 10, 11


@dataclass(frozen=True)
class Cluster:
    """What a worker or the CLI needs to join the beat that runs the schedule file."""

    values: dict[str, Any]
    schedule_file: Path
    root: Path

    def env(self, *, with_schedule_file: bool) -> dict[str, str]:
        values = dict(self.values)
        if with_schedule_file:
            values["schedule"] = {**values["schedule"], "file": str(self.schedule_file)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEQ_")}
        return {**env, **settings_env(values)}

    def records(self) -> ScheduleRecords:
        return ScheduleRecords.connect(Settings(_env_file=None, **self.values))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m imageq.cli ARGS`, as a user runs it: this shell has no schedule file."""
        # Wide, as a terminal may be, so a line of the text view is one line here too.
        return subprocess.run(
            [sys.executable, "-m", "imageq.cli", *args],
            env={**self.env(with_schedule_file=False), "COLUMNS": "250"}, cwd=self.root,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer,
    settings_values: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("schedules")
    (root / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    schedule_file = root / "schedule.toml"
    schedule_file.write_text(run_table(name="fast", file="rows.jsonl", every_s=EVERY_S))
    queues = {
        kind: f"scheds.{kind}" for kind in ("submit", "bulk_submit", "poll", "download", "notify")
    }
    values = {
        **settings_values,
        "redis": {
            "broker_url": redis_server.url(BROKER_DB),
            "store_url": redis_server.url(STORE_DB),
            "key_prefix": "imageq-scheds",
        },
        "worker": {**settings_values["worker"], **{f"{k}_queue": q for k, q in queues.items()}},
        "observability": {**settings_values["observability"], "metrics_port": free_port()},
        "schedule": {
            "manifest_dir": str(root / "manifests"),
            "lock_timeout_s": 4,
            "loop_interval_s": 0.5,
        },
    }
    cluster = Cluster(values, schedule_file, root)
    with BeatProcess(cluster.env(with_schedule_file=True), root / "beat.log") as beat:
        wait_for(lambda: "beat: Acquired lock" in beat.log(), timeout_s=30, what="beat's lock")
        yield cluster


def latest_tick(cluster: Cluster, *, worker: str) -> Tick | None:
    ticks = [tick for tick in cluster.records().ticks("fast") if tick.worker.startswith(worker)]
    return ticks[0] if ticks else None


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


@pytest.mark.e2e
def test_a_worker_without_the_schedule_file_fails_the_tick_loudly(cluster: Cluster) -> None:
    """The tick fails on the worker: an error line naming the run and the reason, the metric,
    and a record that `imageq schedules` shows (valid JSON, by its schema) and that makes
    `imageq health` fail naming the run."""
    env = cluster.env(with_schedule_file=False)
    with WorkerProcess(env, cluster.root / "nofile.log", name="nofile") as worker:
        tick = wait_for(
            lambda: latest_tick(cluster, worker="nofile@"),
            timeout_s=EVERY_S + 20,
            what="a tick recorded by the worker without the schedule file",
        )
        assert tick.reason == "no_schedule_file"
        assert tick.message is not None
        assert "IMAGEQ_SCHEDULE__FILE" in tick.message
        errors = [
            json.loads(line)
            for line in worker.log().splitlines()
            if "scheduled run fast: tick failed (no_schedule_file)" in line
        ]
        assert errors
        assert errors[0]["level"].upper() == "ERROR"
        port = cluster.values["observability"]["metrics_port"]
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'imageq_scheduled_ticks_failed_total{reason="no_schedule_file"}' in metrics

        listed = cluster.cli("schedules", "--json")
        assert listed.returncode == 0, listed.stderr
        view = json.loads(listed.stdout)
        jsonschema.validate(view, schema("schedules.json"))
        assert view["scheduler"]["file"] == str(cluster.schedule_file)
        assert view["scheduler"]["running"] is True
        (fast,) = view["schedules"]
        assert (fast["name"], fast["every_s"], fast["file"]) == ("fast", EVERY_S, "rows.jsonl")
        assert len(fast["next_runs"]) == 3
        last = fast["last_runs"][0]
        assert (last["outcome"], last["reason"]) == ("failed", "no_schedule_file")
        assert last["worker"].startswith("nofile@")
        nofile = next(w for w in view["workers"] if w["worker"].startswith("nofile@"))
        assert (nofile["fingerprint"], nofile["matches"]) == (None, False)

        text = cluster.cli("schedules")
        print(text.stdout)  # shown when the test fails, and with -s
        assert text.returncode == 0, text.stderr
        assert "FAILED (no_schedule_file)" in text.stdout
        assert str(cluster.schedule_file) in text.stdout

        health = subprocess.run(
            [str(Path(sys.executable).with_name("imageq")), "health", "--json", "--timeout", "3"],
            env=cluster.env(with_schedule_file=False), cwd=cluster.root,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert health.returncode == 1, health.stdout + health.stderr
        checks = {check["name"]: check for check in json.loads(health.stdout)["checks"]}
        assert checks["schedules"]["ok"] is False
        assert "run fast: last tick failed" in checks["schedules"]["detail"]
        assert "no_schedule_file" in checks["schedules"]["detail"]
        assert "cannot run scheduled runs" in checks["schedules"]["detail"]
        assert checks["workers"]["ok"] is True
        assert API_KEY not in health.stdout + health.stderr + listed.stdout + text.stdout


@pytest.mark.e2e
def test_a_worker_with_the_schedule_file_runs_the_tick(cluster: Cluster) -> None:
    """With the file, the tick queues its batch: `imageq schedules` shows the batch id and its
    outcome once it completes, and the health check of scheduled runs passes."""
    env = cluster.env(with_schedule_file=True)
    with WorkerProcess(env, cluster.root / "withfile.log", name="withfile"):
        tick = wait_for(
            lambda: latest_tick(cluster, worker="withfile@"),
            timeout_s=EVERY_S + 20,
            what="a tick recorded by the worker with the schedule file",
        )
        assert tick.reason is None
        assert tick.batch_id is not None
        assert tick.batch_id.startswith("fast-")

        def completed() -> dict[str, Any] | None:
            listed = cluster.cli("schedules", "--json")
            assert listed.returncode == 0, listed.stderr
            view: dict[str, Any] = json.loads(listed.stdout)
            runs = view["schedules"][0]["last_runs"]
            mine = [run for run in runs if run["batch_id"] == tick.batch_id]
            return view if mine and mine[0]["outcome"] == "complete" else None

        view = wait_for(completed, timeout_s=30, what=f"batch {tick.batch_id} complete")
        jsonschema.validate(view, schema("schedules.json"))
        run = next(r for r in view["schedules"][0]["last_runs"] if r["batch_id"] == tick.batch_id)
        assert run["batch"]["total"] == len(ROWS)
        assert run["batch"]["counts"]["succeeded"] == len(ROWS)
        withfile = next(w for w in view["workers"] if w["worker"].startswith("withfile@"))
        assert withfile["matches"] is True

        text = cluster.cli("schedules")
        print(text.stdout)  # shown when the test fails, and with -s
        assert f"batch {tick.batch_id}  complete 2/2 (2 succeeded)" in text.stdout

        health = subprocess.run(
            [str(Path(sys.executable).with_name("imageq")), "health", "--json", "--timeout", "3"],
            env=cluster.env(with_schedule_file=False), cwd=cluster.root,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        checks = {check["name"]: check for check in json.loads(health.stdout)["checks"]}
        assert checks["schedules"]["ok"] is True, checks["schedules"]["detail"]
        assert health.returncode == 0, health.stdout
