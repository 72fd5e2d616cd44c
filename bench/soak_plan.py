"""What a soak run does, as plain values: its scale, its timing, and the jobs it feeds.

Two presets: `full_plan` (production timing, thousands of jobs, ten minutes of chaos) and
`smoke_plan` (about 50 jobs at a tenth of the timing, a little of every fault, under two
minutes). Everything here is pure; `bench.soak` carries a plan out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from bench.workload import JobSpec, make_jobs

ApiOutageMode = Literal["refuse", "503"]

# Faults written into prompts (`simulator/markers.py`): each ends with the job succeeding.
MARKER_FAULTS: Final = (
    "sim:submit429=2 sim:retry_after=2",
    "sim:submit503=2",
    "sim:submitdrop=1",
    "sim:poll429=1 sim:retry_after=3",
    "sim:poll503=2",
    "sim:polldrop=1",
    "sim:pollgarbage=1",
)
# The simulator's own failures: the generation fails, or the safety review refuses the prompt.
REMOTE_FAILURE: Final = "sim:fail"
UNSAFE: Final = "sim:unsafe"
SAFETY_MESSAGE: Final = "content safety review"


@dataclass(frozen=True)
class SoakJob:
    """One job of the run and the outcome the simulator will give it."""

    spec: JobSpec
    expected: Literal["succeeded", "failed"]
    # Why it is expected to fail: "remote" (`sim:fail`) or "safety" (`sim:unsafe`).
    failure: Literal["remote", "safety"] | None = None
    marker: str | None = None

    @property
    def job_id(self) -> str:
        return self.spec.job_id


@dataclass(frozen=True)
class SoakPlan:
    """Scale, timing and faults of one run; durations in seconds of wall time."""

    jobs: int
    feed_s: float  # jobs arrive over this long, at random (a Poisson process)
    chaos_s: float  # the chaos driver runs this long, from the first job
    drain_s: float  # then every job gets at most this long to finish and be notified
    seed: int
    workers: int = 2
    concurrency: int = 32
    # Completion times are drawn from the simulator's `realistic` mix, times this.
    latency_scale: float = 1.0
    kill_every_s: tuple[float, float] = (20.0, 60.0)
    api_outage_s: tuple[float, float] = (60.0, 120.0)
    api_outage_mode: ApiOutageMode = "refuse"
    receiver_outage_s: float = 120.0
    burst_s: float = 30.0
    # How often job progress is sampled from Redis (the resolution of recovery times).
    sample_s: float = 1.0
    # After the last job is notified: a window in which a duplicate would still show.
    duplicate_window_s: float = 10.0
    fail_share: float = 0.03
    unsafe_share: float = 0.01
    marker_share: float = 0.10
    # imageq settings groups that differ from production's defaults (smoke shrinks them).
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def recovery_bound_s(self) -> float:
        """The README's promise: a lost job resumes within sweep grace + interval."""
        sweep = self.settings.get("sweep", {})
        return float(sweep.get("grace_s", 15.0)) + float(sweep.get("interval_s", 5.0))


def full_plan(*, jobs: int = 2000, chaos_s: float = 600.0, seed: int = 13) -> SoakPlan:
    """Production timing: imageq's default polling (first poll 10-20 s or adaptive, then every
    4 +/- 1 s, 180 s deadline), sweeper and webhook schedule; jobs fed over 90 % of the chaos
    window so faults land on jobs in every phase."""
    return SoakPlan(jobs=jobs, feed_s=0.9 * chaos_s, chaos_s=chaos_s, drain_s=420.0, seed=seed)


def smoke_plan(*, seed: int = 13) -> SoakPlan:
    """About 50 jobs at a tenth of production timing, each fault once or a few times."""
    return SoakPlan(
        jobs=50,
        feed_s=45.0,
        chaos_s=70.0,
        drain_s=60.0,
        seed=seed,
        latency_scale=0.1,
        kill_every_s=(12.0, 20.0),
        api_outage_s=(8.0, 10.0),
        receiver_outage_s=10.0,
        burst_s=5.0,
        sample_s=0.25,
        duplicate_window_s=2.0,
        fail_share=0.06,
        unsafe_share=0.04,
        marker_share=0.2,
        settings={
            "polling": {
                "first_delay_s": 1.5,
                "interval_s": 0.5,
                "jitter_s": 0.1,
                "deadline_s": 18.0,
                "adaptive_min_s": 1.0,
                "adaptive_max_s": 12.0,
            },
            "retry": {"base_delay_s": 0.2, "max_delay_s": 3.0},
            # A submit's lease is twice these plus 5 s: scaled down with the rest.
            "api": {"connect_timeout_s": 1.0, "read_timeout_s": 3.0},
            "sweep": {"interval_s": 1.0, "grace_s": 2.0},
            "webhook": {"schedule_s": "0,1,4,8,15,30"},
            # The beat's loop must be as quick as the sweeper it sends.
            "schedule": {"loop_interval_s": 0.5, "lock_timeout_s": 5},
        },
    )


def with_overrides(plan: SoakPlan, **changes: Any) -> SoakPlan:
    """The plan with some fields changed (command-line flags)."""
    return replace(plan, **{key: value for key, value in changes.items() if value is not None})


def make_soak_jobs(plan: SoakPlan) -> list[SoakJob]:
    """The run's jobs: the benchmark's quality x resolution mix with `realistic` completion
    times; a few fail on purpose (remote failure, safety refusal), some carry fault markers."""
    specs = make_jobs(plan.jobs, seed=plan.seed, latency="realistic", scale=plan.latency_scale)
    rng = random.Random(f"soak-{plan.seed}")
    jobs = []
    for index, spec in enumerate(specs):
        job_id = f"soak-{index:05d}"
        draw = rng.random()
        if draw < plan.fail_share:
            jobs.append(_job(spec, job_id, REMOTE_FAILURE, "failed", "remote"))
        elif draw < plan.fail_share + plan.unsafe_share:
            jobs.append(_job(spec, job_id, UNSAFE, "failed", "safety"))
        elif draw < plan.fail_share + plan.unsafe_share + plan.marker_share:
            jobs.append(_job(spec, job_id, rng.choice(MARKER_FAULTS), "succeeded", None))
        else:
            jobs.append(_job(spec, job_id, None, "succeeded", None))
    return jobs


def _job(
    spec: JobSpec,
    job_id: str,
    marker: str | None,
    expected: Literal["succeeded", "failed"],
    failure: Literal["remote", "safety"] | None,
) -> SoakJob:
    prompt = f"soak {spec.prompt.removeprefix('benchmark ')}"
    if marker:
        prompt = f"{prompt} {marker}"
    return SoakJob(replace(spec, job_id=job_id, prompt=prompt), expected, failure, marker)


def arrival_times_s(plan: SoakPlan) -> list[float]:
    """When each job is enqueued, in seconds from the start: a Poisson process of `jobs`
    arrivals over `feed_s` (uniform times, sorted)."""
    rng = random.Random(f"arrivals-{plan.seed}")
    return sorted(rng.uniform(0.0, plan.feed_s) for _ in range(plan.jobs))
