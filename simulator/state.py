"""The simulator's memory: tasks, request counters, and the clock they are timed by."""

from __future__ import annotations

import random
import secrets
import string
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from imageq.simulator.markers import Fault
from imageq.simulator.phases import Phase, StatusWords, choose_words, phase_at
from imageq.simulator.sim_config import SimConfig
from imageq.simulator.submission import Submission

_ID_ALPHABET = string.ascii_uppercase + string.digits


class Clock:
    """Monotonic time for every decision, converted to epoch seconds only for reporting."""

    def __init__(self) -> None:
        self._epoch_at_zero = time.time() - time.monotonic()

    def now(self) -> float:
        """Monotonic seconds; immune to wall-clock jumps."""
        return time.monotonic()

    def to_epoch(self, monotonic_s: float) -> float:
        """The epoch seconds matching a monotonic reading."""
        return self._epoch_at_zero + monotonic_s


@dataclass
class Task:
    """One accepted submit. Times are monotonic seconds."""

    task_id: str
    submission: Submission
    created_s: float
    latency_s: float
    words: StatusWords
    file_requests: int = 0

    @property
    def due_s(self) -> float:
        """When the task finishes."""
        return self.created_s + self.latency_s

    def phase(self, now_s: float) -> Phase:
        """The task's phase at a monotonic time."""
        return phase_at(now_s - self.created_s, self.latency_s, fails=self.submission.markers.fail)


@dataclass
class SimState:
    """Tasks and counters of one simulator; `reset()` returns it to a fresh start."""

    config: SimConfig
    clock: Clock = field(default_factory=Clock)
    tasks: dict[str, Task] = field(default_factory=dict)
    task_ids_by_out_task_id: dict[str, str] = field(default_factory=dict)
    submits_by_out_task_id: Counter[str] = field(default_factory=Counter)
    accepted_submits_by_out_task_id: Counter[str] = field(default_factory=Counter)
    queries_by_task_id: Counter[str] = field(default_factory=Counter)
    # Of those, the POST queries (`/api/openapi/query`) by task id: the ones with credits.
    post_queries_by_task_id: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    # The host is "down" (`SimulatorServer.refuse_connections`): API requests on connections
    # opened before are dropped unanswered, as a host going away would.
    refusing: bool = False
    rng: random.Random = field(init=False)
    # The global fault rates now in force: the config's, until `set_fault_rates` changes them.
    fault_rates: dict[Fault, float] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.fault_rates = {
            Fault.RATE_LIMIT: self.config.fault_rate_429,
            Fault.UNAVAILABLE: self.config.fault_rate_503,
            Fault.DROP: self.config.fault_rate_drop,
        }

    def set_fault_rates(self, *, rate_429: float, rate_503: float, rate_drop: float) -> None:
        """Change the global fault rates while running (for outage windows in tests)."""
        for rate in (rate_429, rate_503, rate_drop):
            if not 0 <= rate <= 1:
                raise ValueError(f"a fault rate is between 0 and 1, got {rate}")
        if rate_429 + rate_503 + rate_drop > 1:
            raise ValueError("fault rates add up to more than 1")
        self.fault_rates = {
            Fault.RATE_LIMIT: rate_429,
            Fault.UNAVAILABLE: rate_503,
            Fault.DROP: rate_drop,
        }

    def reset(self) -> None:
        """Forget every task and counter; the random source restarts from the seed."""
        self.tasks.clear()
        self.task_ids_by_out_task_id.clear()
        self.submits_by_out_task_id.clear()
        self.accepted_submits_by_out_task_id.clear()
        self.queries_by_task_id.clear()
        self.post_queries_by_task_id.clear()
        self.requests = 0
        self.rng = random.Random(self.config.seed)

    def find(self, *, task_id: str | None = None, out_task_id: str | None = None) -> Task | None:
        """The task with that id (or out_task_id), if any."""
        if task_id is None and out_task_id is not None:
            task_id = self.task_ids_by_out_task_id.get(out_task_id)
        return None if task_id is None else self.tasks.get(task_id)

    def create(self, submission: Submission) -> Task:
        """Store a new task for an accepted submission, drawing its latency and status words."""
        latency_s = submission.markers.latency_s
        if latency_s is None:
            latency_s = self.config.latency_distribution().sample(
                self.rng, quality=submission.quality, resolution=submission.resolution
            )
        # Task ids come from `secrets`, not the seeded source, so a reset never reissues an id
        # that a client from before the reset may still hold.
        task_id = "task_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))
        varied = self.config.status_words == "varied"
        task = Task(
            task_id, submission, self.clock.now(), latency_s, choose_words(self.rng, varied=varied)
        )
        self.tasks[task_id] = task
        self.task_ids_by_out_task_id[submission.out_task_id] = task_id
        return task

    def random_fault(self, *, may_drop: bool) -> Fault | None:
        """A fault drawn from the configured global rates, or None."""
        draw = self.rng.random()
        for fault, rate in self.fault_rates.items():
            if fault is Fault.DROP and not may_drop:
                continue
            if draw < rate:
                return fault
            draw -= rate
        return None

    def stats(self) -> dict[str, Any]:
        """The introspection document served at `/_sim/stats`; times in epoch seconds.

        Task statuses are the canonical phase names; `requests` counts API requests (submit and
        query routes, any outcome), not files or `/_sim`.
        """
        now_s = self.clock.now()
        tasks = {
            task.task_id: {
                "out_task_id": task.submission.out_task_id,
                "status": task.phase(now_s).value,
                "created_at": self.clock.to_epoch(task.created_s),
                "due_at": self.clock.to_epoch(task.due_s),
                "completed_at": self.clock.to_epoch(task.due_s) if task.due_s <= now_s else None,
            }
            for task in self.tasks.values()
        }
        return {
            "submits_by_out_task_id": dict(self.submits_by_out_task_id),
            "accepted_submits_by_out_task_id": dict(self.accepted_submits_by_out_task_id),
            "queries_by_task_id": dict(self.queries_by_task_id),
            "post_queries_by_task_id": dict(self.post_queries_by_task_id),
            "tasks": tasks,
            "requests": self.requests,
            "max_concurrent_unfinished": max_concurrent(self.tasks.values()),
            "unfinished": sum(1 for task in self.tasks.values() if now_s < task.due_s),
        }


def max_concurrent(tasks: Collection[Task]) -> int:
    """The most tasks alive (created, not yet due) at any one moment, by a sweep over events."""
    # A task due at t and another created at t do not overlap: ends sort before starts.
    events = sorted([(task.created_s, 1) for task in tasks] + [(task.due_s, -1) for task in tasks])
    alive = peak = 0
    for _, delta in events:
        alive += delta
        peak = max(peak, alive)
    return peak
