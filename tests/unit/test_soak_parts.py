"""The soak's pure parts: the fault schedule, progress bookkeeping and recovery, the checks."""

from __future__ import annotations

import pytest

from bench.chaos import make_schedule
from bench.progress import Progress, ProgressLog, Resumed, Seen, attribute
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
    """A poll due at 10 that moves at 31 was 21 s late; the sweeper pushing its score back
    (to 25) does not hide that. One due at 14 that moves at 15 was 1 s late."""
    log = ProgressLog()
    log.observe(5.0, {"a": seen("s|1", 10.0), "b": seen("s|1", 14.0)})
    log.observe(12.0, {"a": seen("s|1", 10.0), "b": seen("s|1", 14.0)})
    log.observe(15.0, {"a": seen("s|1", 25.0), "b": seen("s|2", 18.0)})
    log.observe(31.0, {"a": seen("s|2", 35.0), "b": seen("s|2", 18.0)})
    late = {event.job_id: event.late_s for event in log.events}
    assert late == {"a": 21.0, "b": 1.0}


def test_a_submit_under_a_lease_is_due_at_once() -> None:
    """A job seen inside its submit (lease until 80) and moving at 90 was 85 s late, not 10."""
    log = ProgressLog()
    log.observe(5.0, {"a": seen("q|1", 80.0, working=True)})
    log.observe(90.0, {"a": seen("q|2", 95.0)})
    assert [event.late_s for event in log.events] == [85.0]


def test_late_events_go_to_the_latest_fault_while_the_job_waited() -> None:
    """Late by more than the threshold: to the latest fault between the wait's start and the
    work's due time; none there: no fault. On time: to nobody."""
    events = [
        Progress("a", since=0.0, due_at=10.0, seen_at=30.0),  # kills at 2 and 8: the one at 8
        Progress("b", since=0.0, due_at=1.0, seen_at=25.0),  # before any fault: imageq's own
        Progress("c", since=0.0, due_at=10.0, seen_at=10.5),  # on time
    ]
    held_up = attribute(events, [(2.0, 2.0), (8.0, 8.0), (40.0, 40.0)], late_after_s=1.0)
    assert held_up == {1: [events[0]], None: [events[1]]}


def test_resumed_after_counts_jobs_due_by_the_end_and_those_never_moving() -> None:
    """Due by the fault's end: when each moved on after it; one still waiting never moved;
    one due later is not counted."""
    log = ProgressLog()
    log.observe(1.0, {"a": seen("s|1", 2.0), "b": seen("s|1", 2.0), "c": seen("s|1", 9.0)})
    log.observe(4.0, {"b": seen("s|1", 2.0), "c": seen("s|1", 9.0)})
    assert sorted(log.resumed_after(3.0), key=lambda row: row.job_id) == [
        Resumed("a", 1.0),
        Resumed("b", None),
    ]
    summary = summarise_recovery([], log.resumed_after(3.0))
    assert (summary["due_at_end"], summary["never_moved"]) == (2, 1)


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
