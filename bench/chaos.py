"""The chaos driver: a timed schedule of faults (pure), and the thread that carries it out.

Faults, each recorded with when it really began and ended:
- `worker_sigkill`: a random worker is SIGKILLed and a fresh one started in its place, every
  20-60 s;
- `redis_restart`: Redis stopped and started again on its AOF, once;
- `api_outage`: the API gone for 60-120 s, once: the gate refuses connections and cuts open
  ones (`refuse`), or the simulator answers 503 to everything (`503`);
- `receiver_down`: the webhook receiver drops every request, for 2 minutes;
- `api_429_burst`, `api_503_burst`, `api_mixed_burst`: for 30 s the simulator answers a share
  of requests 429 (with Retry-After), 503, or those and dropped connections.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

from bench.soak_cluster import SoakCluster
from bench.soak_plan import SoakPlan

# Where each single fault starts, as a share of the chaos window. The receiver goes down
# early, so that webhooks held back by it (production's third attempt comes 5 min later)
# land within the run; the rest are spread so each one's recovery can be told apart.
_AT_SHARE: Final = {
    "api_429_burst": 0.05,
    "receiver_down": 0.12,
    "api_503_burst": 0.40,
    "redis_restart": 0.48,
    "api_outage": 0.58,
    "api_mixed_burst": 0.88,
}
_BURST_RATES: Final[dict[str, dict[str, float]]] = {
    "api_429_burst": {"rate_429": 0.3},
    "api_503_burst": {"rate_503": 0.3},
    "api_mixed_burst": {"rate_429": 0.1, "rate_503": 0.1, "rate_drop": 0.1},
}


@dataclass(frozen=True)
class PlannedFault:
    """A fault to inject `at_s` seconds after the start, for `duration_s` (0: a moment)."""

    kind: str
    at_s: float
    duration_s: float = 0.0


@dataclass
class FaultRecord:
    """A fault as it happened: epoch seconds; `detail` says which worker, which mode, etc."""

    kind: str
    planned_s: float
    started_at: float | None = None
    ended_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def make_schedule(plan: SoakPlan) -> list[PlannedFault]:
    """The run's faults in time order: each single fault at its share of the chaos window,
    and worker kills every `kill_every_s` (drawn), kept clear of the Redis restart so their
    recoveries are not mixed up."""
    rng = random.Random(f"chaos-{plan.seed}")
    durations = {
        "receiver_down": plan.receiver_outage_s,
        "api_outage": rng.uniform(*plan.api_outage_s),
        "redis_restart": 0.0,
    }
    faults = [
        PlannedFault(kind, share * plan.chaos_s, durations.get(kind, plan.burst_s))
        for kind, share in _AT_SHARE.items()
    ]
    redis_at = _AT_SHARE["redis_restart"] * plan.chaos_s
    clear_s = plan.kill_every_s[0] / 2
    at_s = rng.uniform(*plan.kill_every_s)
    while at_s < plan.chaos_s:
        if abs(at_s - redis_at) >= clear_s:
            faults.append(PlannedFault("worker_sigkill", at_s))
        at_s += rng.uniform(*plan.kill_every_s)
    return sorted(faults, key=lambda fault: fault.at_s)


class ChaosDriver:
    """Carries out a schedule in a background thread while entered; on exit (or when
    stopped early) every fault still open is ended, so the run can drain on healthy parts."""

    def __init__(
        self, cluster: SoakCluster, schedule: list[PlannedFault], plan: SoakPlan, *, t0: float
    ) -> None:
        self.records: list[FaultRecord] = []
        self.error: BaseException | None = None
        self._cluster = cluster
        self._plan = plan
        self._t0 = t0  # monotonic start of the run
        self._actions = sorted(
            [(fault.at_s, "start", fault) for fault in schedule]
            + [(fault.at_s + fault.duration_s, "end", fault) for fault in schedule
               if fault.duration_s > 0],
            key=lambda action: action[0],
        )  # fmt: skip
        self._open: dict[PlannedFault, FaultRecord] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def __enter__(self) -> ChaosDriver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(120)

    def wait(self, timeout_s: float) -> bool:
        """Block until the schedule is done (True) or `timeout_s` passed (False)."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            for at_s, step, fault in self._actions:
                if self._stop.wait(max(0.0, self._t0 + at_s - time.monotonic())):
                    break
                if step == "start":
                    self._start(fault)
                else:
                    self._end(fault)
        except BaseException as error:  # reported to the run, which stops and says so
            self.error = error
        finally:
            for fault in list(self._open):
                try:
                    self._end(fault)
                except BaseException as error:  # the first failure is the one to report
                    self.error = self.error or error

    def _start(self, fault: PlannedFault) -> None:
        started_at = time.time()
        record = FaultRecord(fault.kind, fault.at_s, started_at=started_at)
        self.records.append(record)
        cluster = self._cluster
        if fault.kind == "worker_sigkill":
            name, pid = cluster.kill_random_worker()
            record.ended_at = record.started_at
            restarting = time.monotonic()
            cluster.restart_worker(name)
            record.detail = {"worker": name, "pid": pid,
                             "restart_s": round(time.monotonic() - restarting, 2)}  # fmt: skip
            return
        if fault.kind == "redis_restart":
            cluster.restart_redis()
            record.ended_at = time.time()
            record.detail = {"down_s": round(record.ended_at - started_at, 2)}
            return
        self._open[fault] = record
        if fault.kind == "api_outage":
            mode = self._plan.api_outage_mode
            record.detail = {"mode": mode}
            if mode == "refuse":
                record.detail["connections_cut"] = cluster.gate.close()
            else:
                cluster.set_api_faults(rate_503=1.0)
        elif fault.kind == "receiver_down":
            cluster.receiver.down = True
        else:
            record.detail = dict(_BURST_RATES[fault.kind])
            cluster.set_api_faults(**_BURST_RATES[fault.kind])

    def _end(self, fault: PlannedFault) -> None:
        record = self._open.pop(fault, None)
        if record is None:
            return
        cluster = self._cluster
        if fault.kind == "api_outage" and self._plan.api_outage_mode == "refuse":
            cluster.gate.open()
        elif fault.kind == "receiver_down":
            cluster.receiver.down = False
            record.detail = {"dropped": cluster.receiver.dropped}
        else:
            cluster.set_api_faults()
        record.ended_at = time.time()
