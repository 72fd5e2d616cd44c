"""The fleet-wide request budget and the pause on 429, on real processes: four Celery workers
sharing one API key against the simulator, which logs every request's arrival by key.

The budget is the bottleneck by design (a fast simulated generation, many jobs queued at
once), so the counts below measure the budget, not the workers."""

from __future__ import annotations

import bisect
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from imageq.simulator.rate_limit import key_digest
from imageq.worker.domain.status import JobStatus
from tests.e2e.cluster import API_KEY, Cluster, cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
WORKERS = 4


LATE_S = 0.05


def budget(rate: float, burst: int, late_s: float = LATE_S) -> dict[str, dict[str, Any]]:
    return {
        "budget": {
            "requests_per_s": rate,
            "burst": burst,
            "pause_on_429": True,
            "horizon_s": 4,
            "late_s": late_s,
        },
        # A fast generation: the first poll mostly finds the job done, so the run is requests.
        # The poller (second test) looks for due polls as often as a turn may be late.
        "polling": {
            "first_delay_s": 0.5,
            "interval_s": 0.5,
            "jitter_s": 0.1,
            "deadline_s": 120,
            "poller_tick_s": LATE_S,
        },
        "worker": {"concurrency": 8, "max_countdown_s": 5},
    }


def arrivals(parts: Cluster) -> list[list[Any]]:
    """The key's requests, `[arrived, endpoint, status, answered]`, in order of arrival."""
    entries = parts.simulator.requests()["keys"].get(key_digest(API_KEY), [])
    return sorted(entries)


class Backlog:
    """Samples, every 0.1 s, whether the budget has requests waiting (booked turns or a
    waiting line): while it has, the budget is the bottleneck and the rate should be R."""

    def __init__(self, parts: Cluster) -> None:
        self._redis = redis.Redis.from_url(parts.redis.url(1))
        base = f"imageq:budget:{key_digest(API_KEY)}"
        self.state_key = base
        self._keys = (f"{base}:booked", f"{base}:line")
        self.busy: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Backlog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            if sum(self._redis.zcard(key) for key in self._keys) > 0:
                self.busy.append(time.time())

    def lost_turns(self) -> int:
        return int(self._redis.hget(self.state_key, "lost") or 0)


def most_in_window(times: list[float], seconds: float) -> int:
    """The most arrivals in any half-open window of `seconds` (one starting at each)."""
    return max(bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times))


def counts_in_windows(times: list[float], seconds: float, start: float, end: float) -> list[int]:
    """Arrivals in each window of `seconds` starting every 0.05 s from `start` while it ends
    by `end`."""
    counts, t = [], start
    while t + seconds <= end:
        counts.append(bisect.bisect_left(times, t + seconds) - bisect.bisect_left(times, t))
        t += 0.05
    return counts


def test_four_workers_share_one_budget(tmp_path: Path) -> None:
    """R = 40/s, burst 4: no 1-second window holds more than R + burst requests; every
    10-second window while submits were still queued (the budget saturated) holds 10 R
    within 1 %; every job finishes once."""
    # late_s 0.075: the most lateness burst 4 can hold at 40/s (ceil(40 x 0.075) + 1 = 4 held,
    # the bucket lets one through at a time), so turns are lost only past 75 ms.
    rate, burst, n, late_s = 40, 4, 400, 0.075
    with cluster(
        tmp_path,
        workers=WORKERS,
        latency="fixed:0.3",
        overrides=budget(rate, burst, late_s),
        simulator_process=True,
    ) as parts:
        with Backlog(parts) as backlog:
            job_ids = parts.enqueue(n)
            parts.settle(job_ids, timeout_s=120)
        parts.check(job_ids)
        log = arrivals(parts)
        lost = backlog.lost_turns()
    times = [entry[0] for entry in log]
    assert all(entry[2] == 200 for entry in log), "the budget alone kept the rate: no 429"
    # Saturated: from the first request until the budget last had a request waiting.
    saturated_until = max(backlog.busy)
    saturated_s = saturated_until - times[0]
    windows = counts_in_windows(times, 10.0, times[0], saturated_until)
    one_s, ten_s = most_in_window(times, 1.0), (min(windows), max(windows))
    print(
        f"\n{len(times)} requests in {times[-1] - times[0]:.1f} s, saturated {saturated_s:.1f} s;"
        f" most in 1 s: {one_s} (bound {rate + burst}); 10 s windows: {ten_s} (10 R = {10 * rate});"
        f" turns lost (ready more than {late_s} s late): {lost};"
        f" load {Path('/proc/loadavg').read_text()}"
    )
    assert saturated_s >= 15
    assert one_s <= rate + burst
    assert 0.99 * 10 * rate <= ten_s[0]
    assert ten_s[1] <= 1.01 * 10 * rate


def test_a_429_pauses_every_worker_then_one_probe(tmp_path: Path) -> None:
    """The next request after the throttle is answered 429 with Retry-After: 5: no request of
    the key arrives from any worker for 5 s, then one probe, alone until it is answered, then
    the budget's rate again; no job fails or times out, and delayed polls moved deadlines."""
    rate, burst, n = 20, 3, 200
    with cluster(
        tmp_path,
        workers=WORKERS,
        latency="fixed:0.3",
        polling_mode="poller",
        overrides=budget(rate, burst),
        simulator_process=True,
    ) as parts:
        job_ids = parts.enqueue(n)
        # Warm up on any 40 jobs (the budget does not take submits in order), so that most of
        # the run is still to come when the 429 lands.
        warm_up_until = time.monotonic() + 60
        while sum(job.is_terminal for job in parts.jobs(job_ids)) < 40:
            assert time.monotonic() < warm_up_until, "40 jobs finished within 60 s"
            time.sleep(0.1)
        parts.simulator.throttle(count=1, retry_after_s=5)
        parts.settle(job_ids, timeout_s=120)
        parts.check(job_ids, JobStatus.SUCCEEDED)
        jobs = parts.jobs(job_ids)
        log = arrivals(parts)
        state = redis.Redis.from_url(parts.redis.url(1))
        budget_state = state.hgetall(f"imageq:budget:{key_digest(API_KEY)}")
        pause_until = float(budget_state.get(b"pause_until", 0))
        lost = int(budget_state.get(b"lost", 0))
    throttled = [entry for entry in log if entry[2] == 429]
    assert len(throttled) == 1, throttled
    hit = throttled[0][0]
    # The worker that got the 429 recorded a 5-second pause: from then on no worker was let
    # through. Requests let through before may still have been on their way (at most `late_s`
    # after their turn, and the way to the API).
    recorded_at = pause_until - 5
    assert throttled[0][3] <= recorded_at + 0.5
    after = [entry for entry in log if entry[0] > throttled[0][3]]
    on_their_way = [entry for entry in after if entry[0] <= recorded_at + LATE_S + 0.05]
    quiet = [entry for entry in after if entry not in on_their_way]
    probe, following = quiet[0], quiet[1]
    silence_s = probe[0] - recorded_at
    print(
        f"\n429 at +0, pause recorded {1000 * (recorded_at - hit):.0f} ms later; "
        f"{len(on_their_way)} request(s) let through before it arrived after the 429, the last"
        f" {1000 * (max([e[0] for e in on_their_way], default=recorded_at) - recorded_at):.0f} ms"
        f" after the pause began; silence {silence_s:.2f} s; probe answered in"
        f" {1000 * (probe[3] - probe[0]):.1f} ms; next request"
        f" {1000 * (following[0] - probe[3]):.1f} ms after its answer"
    )
    later = [entry[0] for entry in quiet if entry[0] > probe[0]]
    resumed = [at for at in later if at <= probe[0] + 3]
    whole_run = most_in_window([entry[0] for entry in log], 1.0)
    per_half_s = [
        sum(1 for at in resumed if probe[0] + k / 2 < at <= probe[0] + (k + 1) / 2)
        for k in range(6)
    ]
    print(
        f"then {len(resumed)} requests in the 3 s after the probe {per_half_s} (per 0.5 s);"
        f" most in 1 s: {whole_run}; turns lost: {lost}; load {Path('/proc/loadavg').read_text()}"
        f"after the probe: {len(later)} requests over {later[-1] - probe[0]:.1f} s;"
        f" per second {[int(n) for n in counts_in_windows(later, 1.0, probe[0], later[-1])[::20]]}"
    )
    assert 5.0 - LATE_S <= silence_s <= 6.0
    assert probe[2] == 200
    assert following[0] >= probe[3], "the probe went alone"
    assert whole_run <= rate + burst
    # The others ask again 0.2 to 0.4 s after the probe went out; from then on, the rate.
    after_recheck = [at for at in resumed if at > probe[0] + 1]
    assert len(after_recheck) >= 0.9 * 2 * rate, "the full rate resumed"
    extended = [job.deadline_extended_s for job in jobs if job.deadline_extended_s > 0]
    assert extended, "polls the pause delayed moved their jobs' deadlines"
    assert max(extended) <= 300
