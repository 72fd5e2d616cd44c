"""The soak's pure parts: the fault schedule, progress bookkeeping and recovery, the checks."""

from __future__ import annotations

import pytest

from bench.chaos import make_schedule
from bench.progress import ProgressLog, Recovery, Seen
from bench.soak_plan import SoakJob, SoakPlan, full_plan, make_soak_jobs, smoke_plan
from bench.soak_verdict import check_lost, check_outcomes, check_twice, summarise_recovery
from bench.workload import JobSpec
from imageq.worker.domain.job import Delivery, Job
from imageq.worker.domain.status import JobStatus

SINGLE = {"redis_restart", "api_outage", "receiver_down",
          "api_429_burst", "api_503_burst", "api_mixed_burst"}  # fmt: skip


@pytest.mark.parametrize("plan", [full_plan(), smoke_plan()], ids=["full", "smoke"])
def test_schedule_has_each_single_fault_once_and_kills_in_range(plan: SoakPlan) -> None:
    """Each single fault once, within the window; kills 20-60 s apart (smoke: 12-20 s), none
    near the Redis restart."""
    schedule = make_schedule(plan)
    kinds = [fault.kind for fault in schedule]
    assert {kind: kinds.count(kind) for kind in SINGLE} == dict.fromkeys(SINGLE, 1)
    assert all(0 <= fault.at_s + fault.duration_s <= plan.chaos_s for fault in schedule)
    kills = [fault.at_s for fault in schedule if fault.kind == "worker_sigkill"]
    low, high = plan.kill_every_s
    assert low <= kills[0] <= high
    redis_at = next(fault.at_s for fault in schedule if fault.kind == "redis_restart")
    assert all(abs(at - redis_at) >= low / 2 for at in kills)


def test_full_plan_keeps_production_timing() -> None:
    """The full run changes no imageq setting, and its API outage is 60-120 s."""
    plan = full_plan()
    assert plan.settings == {}
    assert plan.recovery_bound_s() == 20.0
    outage = next(f for f in make_schedule(plan) if f.kind == "api_outage")
    assert 60 <= outage.duration_s <= 120


def test_job_mix_is_seeded_and_expects_the_injected_failures() -> None:
    """Same seed, same jobs; `sim:fail` and `sim:unsafe` jobs are expected to fail."""
    plan = full_plan(jobs=500)
    jobs = make_soak_jobs(plan)
    assert jobs == make_soak_jobs(plan)
    assert len({job.job_id for job in jobs}) == 500
    for job in jobs:
        assert (job.expected == "failed") == (job.failure is not None)
        assert (job.marker or "") in job.spec.prompt


def seen(mark: str, due_at: float, *, working: bool = False) -> Seen:
    return Seen(mark, due_at, working)


def test_progress_log_measures_lateness_from_the_first_due_seen() -> None:
    """A poll due at 10, still waiting at a kill at 12 and moving at 31, was held up 19 s; the
    sweeper pushing its score back (to 25) does not hide that."""
    log = ProgressLog()
    log.observe(5.0, {"a": seen("s|1", 10.0), "b": seen("s|1", 14.0)})
    log.observe(12.0, {"a": seen("s|1", 10.0), "b": seen("s|1", 14.0)})
    log.observe(15.0, {"a": seen("s|1", 25.0), "b": seen("s|2", 18.0)})
    log.observe(31.0, {"a": seen("s|2", 35.0), "b": seen("s|2", 18.0)})
    found = {row.job_id: row for row in log.recovery_after(12.0)}
    assert found["a"] == Recovery("a", 19.0, 19.0)
    assert found["b"] == Recovery("b", 1.0, 3.0)


def test_a_submit_under_a_lease_is_due_at_once() -> None:
    """A job seen inside its submit (lease until 80) and moving at 90 was held up from the
    kill at 6, not from the lease's end."""
    log = ProgressLog()
    log.observe(5.0, {"a": seen("q|1", 80.0, working=True)})
    log.observe(90.0, {"a": seen("q|2", 95.0)})
    assert log.recovery_after(6.0) == [Recovery("a", 84.0, 84.0)]


def test_leaving_the_index_is_progress_and_a_job_that_never_moves_is_reported() -> None:
    """A job gone from the index moved on then; one still waiting at the end never moved."""
    log = ProgressLog()
    log.observe(1.0, {"a": seen("s|1", 2.0), "b": seen("s|1", 2.0)})
    log.observe(3.0, {"b": seen("s|1", 2.0)})
    assert sorted(log.recovery_after(1.5), key=lambda row: row.job_id) == [
        Recovery("a", 1.0, 1.5),
        Recovery("b", None, None),
    ]
    summary = summarise_recovery(log.recovery_after(1.5), late_after_s=0.5)
    assert summary["never_moved"] == 1
    assert summary["late"] == 1


def soak_job(job_id: str, expected: str = "succeeded", failure: str | None = None) -> SoakJob:
    spec = JobSpec(job_id, "p", "16:9", "1K", "low", 1.0)
    return SoakJob(spec, expected, failure)  # type: ignore[arg-type]


def record(job_id: str, status: JobStatus, **fields: object) -> Job:
    return Job(job_id, {}, status=status, **fields)  # type: ignore[arg-type]


def test_outcomes_expect_the_injected_reason_for_a_failure() -> None:
    """A `sim:fail` job failed by an outage is wrong, as is a job that should succeed; a
    remote failure that failed remotely is right."""
    jobs = [soak_job("a", "failed", "remote"), soak_job("b", "failed", "remote"), soak_job("c")]
    records = {
        "a": record("a", JobStatus.FAILED, error={"remote_status": "failed"}),
        "b": record("b", JobStatus.FAILED, error={"type": "ApiUnavailable", "message": "x"}),
        "c": record("c", JobStatus.TIMED_OUT, error={"type": "JobError", "message": "late"}),
    }
    result = check_outcomes(jobs, records, [], {})
    assert result["count"] == 2
    assert [row["job_id"] for row in result["sample"]] == ["b", "c"]


def test_lost_counts_unfinished_and_unnotified_but_not_refused() -> None:
    """Lost: no record, not finished, or never delivered; a job refused at enqueue is not."""
    jobs = [soak_job(name) for name in "abcde"]
    records = {
        "a": None,
        "b": record("b", JobStatus.SUBMITTED),
        "c": record("c", JobStatus.SUCCEEDED, webhook_state=Delivery.DEAD),
        "d": record("d", JobStatus.SUCCEEDED),
        "e": None,
    }
    result = check_lost(jobs, records, {"d": 1}, {"e": "ConnectionError()"})
    assert result["count"] == 3
    assert result["enqueue_refused"] == 1


def test_twice_counts_only_more_than_one() -> None:
    """Once (or never, for a job refused before the API) is fine; twice is not."""
    assert check_twice({"a": 1, "b": 2}, ["a", "b", "c"]) == {
        "passed": False,
        "count": 1,
        "sample": {"b": 2},
    }
