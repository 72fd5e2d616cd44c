"""The sizing model (`imageq.ops.sizing_model`) and `imageq sizing`: pure arithmetic, the
shipped coefficients against the committed measurement, and the command's JSON and text."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import typer
from typer.testing import CliRunner

from imageq.cli.sizing import sizing
from imageq.ops.sizing_coefficients import load_coefficients, with_overrides
from imageq.ops.sizing_model import (
    DAY_S,
    GB,
    MODES,
    Coefficients,
    Cost,
    Deployment,
    Load,
    jobs_in_flight,
    polls_per_job,
    process_capacity,
    size,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "sizing" / "results.json"
SCHEMA = json.loads((ROOT / "cli" / "schemas" / "sizing.json").read_text())

COSTS = Coefficients(
    worker_cpu_ms=Cost(10.0, 2.0),
    redis_cpu_ms=Cost(1.0, 0.5),
    broker_messages=Cost(2.0, 1.0),
    redis_commands=Cost(50.0, 10.0),
    api_requests=Cost(1.0, 1.0),
    network_bytes=Cost(5000.0, 1000.0),
    redis_bytes_in_flight=10_000.0,
    redis_bytes_finished=2_000.0,
)


@pytest.mark.parametrize(
    ("mean_s", "expected"),
    [(10.0, 1.0), (15.0, 1.0), (23.0, 1.0 + 2.0 + 0.5), (43.0, 1.0 + 7.0 + 0.5)],
)
def test_polls_per_job(mean_s: float, expected: float) -> None:
    """One poll when the job is done by the first; then one per interval, half a one late."""
    assert polls_per_job(mean_s, first_poll_s=15.0, gap_s=4.0) == pytest.approx(expected)


def test_placed_later_polls_are_modelled_near_the_far_end_of_their_window() -> None:
    """Adaptive: later polls 4.96 s apart at the defaults (4 +/- 1 s), the placed schedule's
    mean in the realistic mix; fixed: the plain interval. Fewer polls for the same job."""
    assert Deployment().later_gap_s == pytest.approx(4.96)
    assert Deployment(adaptive=False).later_gap_s == 4.0
    assert Deployment(interval_s=10.0, jitter_s=0.0).later_gap_s == 10.0
    placed = size(Load(864_000, 120.0, mean_generation_s=60.0), Deployment(), COSTS)
    fixed = size(Load(864_000, 120.0, mean_generation_s=60.0), Deployment(adaptive=False), COSTS)
    assert placed.polls_per_job == pytest.approx(1.0 + (60.0 - 0.58 * 60.0) / 4.96 + 0.5)
    assert placed.polls_per_job < fixed.polls_per_job


@pytest.mark.parametrize(("mean_s", "first_s"), [(10.0, 10.0), (43.0, 0.58 * 43.0), (300.0, 120.0)])
def test_adaptive_first_poll_is_p5_within_its_bounds(mean_s: float, first_s: float) -> None:
    """Adaptive: near p5 of the times (0.58 x the mean), never before 10 s or after 120 s."""
    assert Deployment().first_poll_for(mean_s) == pytest.approx(first_s)
    assert Deployment(adaptive=False).first_poll_for(mean_s) == 15.0


def test_jobs_in_flight_is_littles_law() -> None:
    """Rate x (p99 generation + poll lag)."""
    assert jobs_in_flight(10.0, p99_generation_s=120.0, poll_lag_s=5.0) == pytest.approx(1250.0)


def test_mean_defaults_to_a_share_of_the_p99() -> None:
    """Without a mean, the realistic mix's mean/p99 ratio is used; a given mean wins."""
    assert Load(1000, 100.0).mean_s == pytest.approx(33.0)
    assert Load(1000, 100.0, mean_generation_s=50.0).mean_s == 50.0


def test_everything_scales_with_the_load() -> None:
    """Twice the jobs: twice the in-flight jobs, memory, API and broker rates."""
    one = size(Load(1_000_000, 120.0), Deployment(), COSTS)
    two = size(Load(2_000_000, 120.0), Deployment(), COSTS)
    assert two.in_flight == pytest.approx(2 * one.in_flight)
    assert two.redis_memory_bytes == pytest.approx(2 * one.redis_memory_bytes)
    assert two.api_requests_s == pytest.approx(2 * one.api_requests_s)
    assert two.broker_messages_s == pytest.approx(2 * one.broker_messages_s)
    assert two.processes >= 2 * one.processes - 1


def test_numbers_of_one_load() -> None:
    """864,000 jobs/day (10/s), p99 120 s, mean 23 s: each figure from the coefficients."""
    fixed = Deployment(adaptive=False)
    answer = size(Load(864_000, 120.0, mean_generation_s=23.0), fixed, COSTS)
    polls = 3.5
    assert answer.polls_per_job == pytest.approx(polls)
    assert answer.in_flight == pytest.approx(10 * 125)
    assert answer.api_requests_s == pytest.approx(10 * (1 + polls))
    assert answer.broker_messages_s == pytest.approx(10 * (2 + polls))
    assert answer.redis_in_flight_bytes == pytest.approx(1250 * 10_000)
    assert answer.redis_retained_bytes == pytest.approx(10 * 7 * DAY_S * 2_000)
    # CPU: 17 ms a job, 0.7 of a core: 41 jobs/s a process; threads: 32 x 0.7 / 1.267 s.
    assert answer.worker_cpu_ms_per_job == pytest.approx(17.0)
    assert answer.process_bound == "threads"
    assert answer.process_jobs_s == pytest.approx(0.7 * 32 / (4.5 * 0.3 + 0.2 + 0.017))
    assert answer.processes == math.ceil(10 / answer.process_jobs_s)
    assert answer.hosts == math.ceil(answer.processes / 4)


def test_cpu_bounds_a_process_when_requests_are_quick() -> None:
    """Fast API answers leave threads idle: CPU is what caps a process."""
    quick = Deployment(api_latency_s=0.01, webhook_latency_s=0.01)
    per_process, bound = process_capacity(COSTS, 3.0, quick)
    assert bound == "cpu"
    assert per_process == pytest.approx(0.7 / 0.016)


def test_poller_threads_are_a_limit_of_their_own() -> None:
    """In poller mode polls hold poller threads, not Celery threads."""
    answer = size(Load(864_000, 120.0), Deployment(mode="poller"), COSTS)
    names = [limit.name for limit in answer.limits]
    assert "poller threads" in names
    countdown = size(Load(864_000, 120.0), Deployment(), COSTS)
    assert "poller threads" not in [limit.name for limit in countdown.limits]
    assert answer.thread_s_per_job < countdown.thread_s_per_job


@pytest.mark.parametrize(
    ("deployment", "first"),
    [
        (Deployment(api_requests_s=5.0), "API rate"),
        (Deployment(redis_memory_gb=1.0), "Redis memory"),
        (Deployment(api_in_flight=100), "API in flight"),
    ],
)
def test_first_limit(deployment: Deployment, first: str) -> None:
    """A scarce shared resource is the first limit, and the load it allows fills it exactly."""
    load = Load(864_000, 120.0)
    answer = size(load, deployment, COSTS)
    assert answer.first_limit == first
    limit = next(limit for limit in answer.limits if limit.name == first)
    assert limit.max_jobs_per_day is not None
    assert limit.max_jobs_per_day < load.jobs_per_day
    at_limit = size(replace(load, jobs_per_day=limit.max_jobs_per_day), deployment, COSTS)
    filled = next(limit for limit in at_limit.limits if limit.name == first)
    assert filled.use == pytest.approx(1.0)


def test_worker_tier_is_first_when_shared_parts_are_ample() -> None:
    """With no shared limit given, the sized fleet's hosts or threads fill first."""
    answer = size(Load(864_000, 120.0), Deployment(redis_memory_gb=1024.0), COSTS)
    assert answer.first_limit in ("host CPU", "threads")
    assert answer.first_shared_limit == "Redis CPU"
    memory = next(limit for limit in answer.limits if limit.name == "Redis memory")
    assert memory.available == 1024 * GB


def test_overrides_replace_one_part_each() -> None:
    """A cost's name sets its per-job part, `_per_poll` its per-poll part; None keeps it."""
    changed = with_overrides(
        COSTS, worker_cpu_ms=3.0, worker_cpu_ms_per_poll=0.5, redis_bytes_finished=None
    )
    assert changed.worker_cpu_ms == Cost(3.0, 0.5)
    assert changed.redis_bytes_finished == COSTS.redis_bytes_finished
    assert with_overrides(COSTS, redis_bytes_in_flight=1.0).redis_bytes_in_flight == 1.0


def test_shipped_coefficients_are_the_committed_medians() -> None:
    """The data file in the package holds the medians of bench/results/sizing/results.json."""
    shipped = load_coefficients()
    measured = json.loads(RESULTS.read_text())["coefficients"]
    for mode in MODES:
        assert shipped[mode] == load_coefficients(json.dumps({"modes": measured}))[mode]
        assert shipped[mode].worker_cpu_ms.per_job > 0
        assert shipped[mode].redis_bytes_in_flight > 0


def test_committed_capacity_checks_are_on_the_safe_side() -> None:
    """The model's predicted capacity of this machine against the measured one, as committed:
    it never promised more than 1.25 x what the machine kept up with (measured at least 0.8 x
    predicted), and it fell short by at most a third. Its costs come from jobs handed over at
    once, which cost more per job than a steady arrival (docs/sizing.md), so it errs low."""
    checks = json.loads(RESULTS.read_text())["capacity"]
    assert checks, "results.json holds no capacity check"
    for check in checks:
        assert 0.8 <= check["measured_over_predicted"] <= 4 / 3, check["rep"]


def run(*args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(sizing)
    app.command("other")(lambda: None)  # a group, so the command is named as in imageq
    result = CliRunner().invoke(app, ["sizing", *args])
    return result.exit_code, result.stdout


def test_command_json_fits_its_schema() -> None:
    """--json: one object by cli/schemas/sizing.json, the mode and rates as asked."""
    code, out = run("--jobs-per-day", "1000000", "--p99-generation-s", "120", "--json")
    assert code == 0, out
    view = json.loads(out)
    jsonschema.validate(view, SCHEMA)
    assert view["inputs"]["mode"] == "countdown"
    assert view["peak_jobs_s"] == pytest.approx(1_000_000 / DAY_S)
    assert view["first_limit"]["name"] in [limit["name"] for limit in view["limits"]]
    code, out = run(
        "--jobs-per-day", "1000000", "--p99-generation-s", "120", "--mode", "poller",
        "--api-requests-s", "10", "--json",
    )  # fmt: skip
    assert code == 0, out
    view = json.loads(out)
    assert view["inputs"]["mode"] == "poller"
    assert view["first_limit"]["name"] == "API rate"


def test_command_text_names_the_first_limit() -> None:
    """Without --json: the summary lines, the table of limits, the first limit."""
    code, out = run("--jobs-per-day", "50000", "--p99-generation-s", "90", "--redis-memory-gb", "1")
    assert code == 0, out
    assert "workers:" in out
    assert "redis:" in out
    assert "first limit: Redis memory" in out


def test_command_refuses_a_bad_load() -> None:
    """No jobs, or an unknown mode: exit 2."""
    assert run("--jobs-per-day", "0", "--p99-generation-s", "90")[0] == 2
    assert run("--jobs-per-day", "10", "--p99-generation-s", "90", "--mode", "x")[0] == 2
