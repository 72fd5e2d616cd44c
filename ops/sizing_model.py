"""The sizing model: from a load (jobs per day, generation times) and measured per-job costs,
the worker processes and hosts, the Redis memory, the broker and API rates it needs, and which
limit it meets first. Pure: no I/O, no clock (`docs/sizing.md` explains every step).

Each cost is split in a part per job (submit, webhook, bookkeeping) and a part per poll, so
the model holds for generation times other than the benchmark's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

Mode = Literal["countdown", "poller"]
MODES: Final = ("countdown", "poller")
DAY_S: Final = 86_400.0
GB: Final = 1024**3
# The mean generation time as a share of its p99, in the simulator's realistic mix (every
# quality x resolution cell alike): used when the mean is not given.
MEAN_TO_P99: Final = 0.33
# The adaptive first poll goes at p5 of recent times of the job's quality and resolution; in
# each cell of that mix p5 is 0.58 x the mean.
ADAPTIVE_P5_TO_MEAN: Final = 0.58
# Later polls placed by recent times (adaptive on) fall mostly near the far end of their
# `interval_s` +/- `jitter_s` window, since few of a cell's jobs end in any one interval: in
# that mix the mean gap is `interval_s` + 0.96 x `jitter_s` (4.96 s at the defaults, over
# three seeds of `bench.adaptive_model`'s jobs, 4.954-4.958 s).
PLACED_GAP_JITTER_SHARE: Final = 0.96


@dataclass(frozen=True)
class Cost:
    """One measured cost: so much per job, plus so much per poll."""

    per_job: float
    per_poll: float

    def of(self, polls: float) -> float:
        return self.per_job + self.per_poll * polls


@dataclass(frozen=True)
class Coefficients:
    """What one job costs in one polling mode (measured by `bench.sizing_measure`)."""

    worker_cpu_ms: Cost
    redis_cpu_ms: Cost  # broker + job store (one server by default)
    broker_messages: Cost
    redis_commands: Cost  # broker + job store
    api_requests: Cost
    network_bytes: Cost  # to and from Redis, the API and webhook receivers
    redis_bytes_in_flight: float  # broker + store memory while a job is in flight
    redis_bytes_finished: float  # job-store memory a finished job keeps for the record TTL


@dataclass(frozen=True)
class Load:
    """The load to size for."""

    jobs_per_day: float
    p99_generation_s: float
    mean_generation_s: float | None = None  # None: MEAN_TO_P99 x the p99
    peak_factor: float = 1.0  # the busiest hour's rate over the day's mean rate

    @property
    def peak_jobs_s(self) -> float:
        return self.jobs_per_day / DAY_S * self.peak_factor

    @property
    def mean_s(self) -> float:
        return self.mean_generation_s or MEAN_TO_P99 * self.p99_generation_s


@dataclass(frozen=True)
class Deployment:
    """How the workers run and what the shared parts allow; None: no such limit is known."""

    mode: Mode = "countdown"
    threads: int = 32  # IMAGEQ_WORKER__CONCURRENCY
    poller_threads: int = 256  # IMAGEQ_POLLING__POLLER_MAX_THREADS: the most the pool grows to
    cores_per_host: int = 4
    processes_per_host: int | None = None  # None: one per core (a process uses one core at most)
    cpu_target: float = 0.7  # the share of a core (or thread) to plan for, leaving headroom
    first_poll_s: float = 15.0  # IMAGEQ_POLLING__FIRST_DELAY_S
    adaptive: bool = True  # IMAGEQ_POLLING__ADAPTIVE
    adaptive_min_s: float = 10.0  # IMAGEQ_POLLING__ADAPTIVE_MIN_S
    adaptive_max_s: float = 120.0  # IMAGEQ_POLLING__ADAPTIVE_MAX_S
    interval_s: float = 4.0  # IMAGEQ_POLLING__INTERVAL_S
    jitter_s: float = 1.0  # IMAGEQ_POLLING__JITTER_S
    record_ttl_s: float = 7 * DAY_S  # IMAGEQ_REDIS__RECORD_TTL_S
    api_latency_s: float = 0.3  # how long one API request holds a thread (not measured here)
    webhook_latency_s: float = 0.2  # how long one webhook delivery holds a thread
    redis_memory_gb: float | None = None
    api_requests_s: float | None = None  # the API key's request rate limit
    api_in_flight: float | None = None  # the API key's concurrent tasks, or limits.max_in_flight

    @property
    def host_processes(self) -> int:
        return self.processes_per_host or self.cores_per_host

    def first_poll_for(self, mean_generation_s: float) -> float:
        """When the first poll goes: adaptive, near p5 of the generation times, within its
        bounds; else the fixed first delay."""
        if not self.adaptive:
            return self.first_poll_s
        p5 = ADAPTIVE_P5_TO_MEAN * mean_generation_s
        return min(max(p5, self.adaptive_min_s), self.adaptive_max_s)

    @property
    def later_gap_s(self) -> float:
        """The mean gap between later polls: placed by recent times when adaptive, else the
        plain interval (the jitter averages out)."""
        if not self.adaptive:
            return self.interval_s
        return self.interval_s + PLACED_GAP_JITTER_SHARE * self.jitter_s


@dataclass(frozen=True)
class Limit:
    """One resource: what the load needs of it, what there is, and the load it would allow."""

    name: str
    unit: str
    needed: float
    available: float | None
    max_jobs_per_day: float | None

    @property
    def use(self) -> float | None:
        return None if not self.available else self.needed / self.available


@dataclass(frozen=True)
class Sizing:
    """The model's answer for one load and deployment."""

    polls_per_job: float
    in_flight: float
    worker_cpu_ms_per_job: float
    thread_s_per_job: float  # on a Celery thread (the poller's own threads not counted)
    process_jobs_s: float
    process_bound: str  # "cpu" or "threads": what caps one worker process
    processes: int
    hosts: int
    redis_memory_bytes: float
    redis_in_flight_bytes: float
    redis_retained_bytes: float
    broker_messages_s: float
    redis_commands_s: float
    api_requests_s: float
    network_bytes_s: float
    limits: tuple[Limit, ...]
    first_limit: str
    first_shared_limit: str | None  # the first that more workers do not lift (None: unknown)


def polls_per_job(mean_generation_s: float, *, first_poll_s: float, gap_s: float) -> float:
    """Polls of a job that takes the mean time: the first one, one per gap after it until the
    job is seen done, the last half a gap late on average."""
    if mean_generation_s <= first_poll_s:
        return 1.0
    return 1.0 + (mean_generation_s - first_poll_s) / gap_s + 0.5


def jobs_in_flight(rate_jobs_s: float, *, p99_generation_s: float, poll_lag_s: float) -> float:
    """Little's law with the p99 generation time plus the poll lag: a peak, not a mean."""
    return rate_jobs_s * (p99_generation_s + poll_lag_s)


def thread_seconds_per_job(
    coefficients: Coefficients, polls: float, deployment: Deployment
) -> tuple[float, float]:
    """Seconds a job holds a Celery thread, and a poller thread (0 in countdown mode)."""
    cpu_s = coefficients.worker_cpu_ms.of(polls) / 1000
    requests = coefficients.api_requests.of(polls)
    poll_s = polls * deployment.api_latency_s
    other_s = (requests - polls) * deployment.api_latency_s + deployment.webhook_latency_s
    if deployment.mode == "poller":
        return other_s + cpu_s, poll_s
    return other_s + poll_s + cpu_s, 0.0


def process_capacity(
    coefficients: Coefficients, polls: float, deployment: Deployment
) -> tuple[float, str]:
    """Jobs/s one worker process sustains at the CPU target, and what caps it."""
    cpu_s = coefficients.worker_cpu_ms.of(polls) / 1000
    by_cpu = deployment.cpu_target / cpu_s
    celery_s, poller_s = thread_seconds_per_job(coefficients, polls, deployment)
    by_threads = deployment.cpu_target * deployment.threads / celery_s
    if poller_s:
        by_threads = min(by_threads, deployment.cpu_target * deployment.poller_threads / poller_s)
    return (by_cpu, "cpu") if by_cpu <= by_threads else (by_threads, "threads")


def size(
    load: Load,
    deployment: Deployment,
    coefficients: Coefficients,
    *,
    polls: float | None = None,
) -> Sizing:
    """The whole answer: see `Sizing`. `polls`: polls per job, if known (else modelled)."""
    rate = load.peak_jobs_s
    if polls is None:
        polls = polls_per_job(
            load.mean_s,
            first_poll_s=deployment.first_poll_for(load.mean_s),
            gap_s=deployment.later_gap_s,
        )
    in_flight = jobs_in_flight(
        rate,
        p99_generation_s=load.p99_generation_s,
        poll_lag_s=deployment.interval_s + deployment.jitter_s,
    )
    per_process, bound = process_capacity(coefficients, polls, deployment)
    processes = max(1, math.ceil(rate / per_process))
    hosts = max(1, math.ceil(processes / deployment.host_processes))
    in_flight_bytes = in_flight * coefficients.redis_bytes_in_flight
    # Records live record_ttl_s after their last change: a TTL's worth of the day's mean rate.
    retained_bytes = (
        load.jobs_per_day / DAY_S * deployment.record_ttl_s * coefficients.redis_bytes_finished
    )
    memory = in_flight_bytes + retained_bytes
    limits = _limits(load, deployment, coefficients, polls, processes, hosts, memory, in_flight)
    return Sizing(
        polls_per_job=polls,
        in_flight=in_flight,
        worker_cpu_ms_per_job=coefficients.worker_cpu_ms.of(polls),
        thread_s_per_job=thread_seconds_per_job(coefficients, polls, deployment)[0],
        process_jobs_s=per_process,
        process_bound=bound,
        processes=processes,
        hosts=hosts,
        redis_memory_bytes=memory,
        redis_in_flight_bytes=in_flight_bytes,
        redis_retained_bytes=retained_bytes,
        broker_messages_s=rate * coefficients.broker_messages.of(polls),
        redis_commands_s=rate * coefficients.redis_commands.of(polls),
        api_requests_s=rate * coefficients.api_requests.of(polls),
        network_bytes_s=rate * coefficients.network_bytes.of(polls),
        limits=limits,
        first_limit=min(limits, key=_allowed).name,
        first_shared_limit=_first_shared(limits),
    )


WORKER_LIMITS: Final = ("host CPU", "threads", "poller threads")


def _first_shared(limits: tuple[Limit, ...]) -> str | None:
    shared = [
        limit
        for limit in limits
        if limit.name not in WORKER_LIMITS and limit.max_jobs_per_day is not None
    ]
    return min(shared, key=_allowed).name if shared else None


def _allowed(limit: Limit) -> float:
    return math.inf if limit.max_jobs_per_day is None else limit.max_jobs_per_day


def _limits(
    load: Load,
    deployment: Deployment,
    coefficients: Coefficients,
    polls: float,
    processes: int,
    hosts: int,
    memory: float,
    in_flight: float,
) -> tuple[Limit, ...]:
    """Every resource the load uses, the worker tier as sized (`processes` on `hosts`). Each
    need grows with the load, so the load a resource allows is the load x available / needed."""

    def limit(name: str, unit: str, needed: float, available: float | None) -> Limit:
        allowed = None if available is None or needed <= 0 else available / needed
        scaled = None if allowed is None else allowed * load.jobs_per_day
        return Limit(name, unit, needed, available, scaled)

    rate = load.peak_jobs_s
    target = deployment.cpu_target
    celery_s, poller_s = thread_seconds_per_job(coefficients, polls, deployment)
    # A process uses one core at most (the GIL), so a host's cores beyond its processes idle.
    cores = min(hosts * deployment.cores_per_host, processes)
    memory_gb = deployment.redis_memory_gb
    cpu_s = coefficients.worker_cpu_ms.of(polls) / 1000
    api_rate = rate * coefficients.api_requests.of(polls)
    found = [
        limit("host CPU", "cores", rate * cpu_s, cores * target),
        limit("threads", "busy threads", rate * celery_s, processes * deployment.threads * target),
    ]
    if poller_s:
        available = processes * deployment.poller_threads * target
        found.append(limit("poller threads", "busy threads", rate * poller_s, available))
    found += [
        # The shared parts: more workers do not lift these.
        limit("Redis memory", "bytes", memory, None if memory_gb is None else memory_gb * GB),
        # Broker and job store on one server by default: one core serves both.
        limit("Redis CPU", "cores", rate * coefficients.redis_cpu_ms.of(polls) / 1000, target),
        limit("API rate", "requests/s", api_rate, deployment.api_requests_s),
        limit("API in flight", "jobs", in_flight, deployment.api_in_flight),
    ]
    return tuple(found)


def machine_capacity(
    cpu_ms_per_job: float, *, cores: float, threads: int, thread_s_per_job: float
) -> tuple[float, str]:
    """Jobs/s one machine sustains when every part of the run (workers, Redis, the API
    simulator, the producer) shares its `cores`: the check of the model against a measurement."""
    by_cpu = cores / (cpu_ms_per_job / 1000)
    by_threads = threads / thread_s_per_job
    return (by_cpu, "cpu") if by_cpu <= by_threads else (by_threads, "threads")
