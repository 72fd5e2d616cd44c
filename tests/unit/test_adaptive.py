"""Adaptive schedule: the first poll at a low percentile of recent generation times, clamped,
each later one placed in its window by them; or the documented schedule."""

from __future__ import annotations

import pytest

from imageq.config import PollingSettings, Settings
from imageq.worker.domain.status import RemoteStatus
from imageq.worker.errors import RateLimited
from imageq.worker.policy.adaptive import first_poll_base_s, next_poll_gap_s, percentile
from imageq.worker.policy.polling import PollAgain, first_poll_delay_s, next_step
from imageq.worker.store.sample_cache import SampleCache
from imageq.worker.upstream.responses import RemoteTask, parse_task

TIMING = PollingSettings()  # 15 s default, adaptive on: p5 of >= 10 samples, within [10, 120]


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([5.0], 10, 5.0),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 10, 1),
        ([3, 1, 2], 50, 2),
        ([4, 9], 100, 9),
    ],
)
def test_percentile_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    """Nearest-rank percentile on unsorted input."""
    assert percentile(values, pct) == expected


def test_too_few_samples_keep_the_documented_schedule() -> None:
    """Nine samples are not enough: the first poll stays at 15 s."""
    assert first_poll_base_s([40.0] * 9, TIMING) == 15.0


def test_enough_samples_move_the_first_poll() -> None:
    """With 40 samples of a slow kind of job, the first poll waits for most of them."""
    samples = [float(s) for s in range(40, 80)]
    assert first_poll_base_s(samples, TIMING) == 41.0


@pytest.mark.parametrize(("sample", "expected"), [(3.0, 10.0), (500.0, 120.0)])
def test_estimate_is_clamped(sample: float, expected: float) -> None:
    """Never earlier than 10 s (the API's advice), never later than adaptive_max_s."""
    assert first_poll_base_s([sample] * 20, TIMING) == expected


def test_a_first_delay_set_below_the_floor_lowers_it() -> None:
    """first_delay_s=2 for a fast API: once samples exist the first poll is not held at 10 s."""
    fast = PollingSettings(first_delay_s=2)
    assert fast.adaptive_floor_s == 2.0
    assert first_poll_base_s([3.0] * 20, fast) == 3.0
    assert first_poll_base_s([0.5] * 20, fast) == 2.0


@pytest.mark.parametrize(
    ("values", "floor"),
    [
        ({}, 10.0),  # neither set: the API's advice
        ({"first_delay_s": 12}, 10.0),  # a first delay above the floor leaves it
        ({"adaptive_min_s": 20}, 20.0),  # a floor set alone holds, above the default first delay
        ({"first_delay_s": 2, "adaptive_min_s": 5}, 2.0),  # both set: the first delay bounds it
    ],
)
def test_the_floor_of_the_adaptive_first_poll(values: dict[str, float], floor: float) -> None:
    """adaptive_min_s, or a first delay set below it."""
    assert PollingSettings(**values).adaptive_floor_s == floor


def test_the_first_delay_from_the_environment_bounds_the_adaptive_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """IMAGEQ_POLLING__FIRST_DELAY_S=2 is a first delay the user set: it lowers the floor."""
    monkeypatch.setenv("IMAGEQ_POLLING__FIRST_DELAY_S", "2")
    polling = Settings(_env_file=None).polling
    assert first_poll_base_s([1.0] * 20, polling) == 2.0


def test_adaptive_off() -> None:
    """adaptive=False: the documented schedule always."""
    assert first_poll_base_s([50.0] * 20, PollingSettings(adaptive=False)) == 15.0


def test_jitter_applies_to_the_adaptive_delay() -> None:
    """The adaptive delay still gets its +/- jitter."""
    samples = [60.0] * 20
    assert first_poll_delay_s(TIMING, lambda: 0.0, samples=samples) == 59.0
    assert first_poll_delay_s(TIMING, lambda: 0.5, samples=samples) == 60.0


def test_generation_time_from_the_platform_envelope() -> None:
    """created_at and completed_at (ISO 8601) give the platform's own generation time."""
    task = parse_task(
        {
            "statusCode": 200,
            "data": {
                "task_id": "t",
                "status": "completed",
                "created_at": "2025-12-18T10:12:11.000Z",
                "completed_at": "2025-12-18T10:13:41.500Z",
                "output": [{"url": "https://a/1.png"}],
            },
        }
    )
    assert task.generation_s == pytest.approx(90.5)
    assert parse_task({"code": 200, "data": [{"task_id": "t", "status": "x"}]}).generation_s is None


def test_model_adaptive_saves_polls_without_raising_lag() -> None:
    """bench.adaptive_model on the realistic mix: the default setting polls less than the fixed
    schedule and keeps lag p99 within half a second of it; p20 polls less still, but late."""
    from bench.adaptive_model import simulate

    def run(timing: PollingSettings) -> tuple[float, float]:
        out = simulate(timing, jobs_per_cell=40, trials=8, seed=3)
        return out.polls_per_job, out.lag_p99_s

    fixed_polls, fixed_lag = run(PollingSettings(adaptive=False))
    polls, lag = run(TIMING)
    late_polls, late_lag = run(TIMING.model_copy(update={"adaptive_percentile": 20.0}))
    assert polls < 0.8 * fixed_polls
    assert lag < fixed_lag + 0.5
    assert late_polls < polls
    assert late_lag > fixed_lag + 3


# interval 4 s, jitter 1 s: every gap in [3, 5]; p is the chance of finishing within 4 s.
PLACING = PollingSettings(adaptive_chance=0.5)
SPREAD = tuple(float(s) for s in range(20, 120))  # one completion a second, 20-119 s


@pytest.mark.parametrize(
    ("timing", "samples"),
    [
        (TIMING, SPREAD[:9]),  # too few samples
        (PollingSettings(adaptive=False), SPREAD),  # adaptive off
    ],
)
def test_the_documented_schedule_without_enough_samples(
    timing: PollingSettings, samples: tuple[float, ...]
) -> None:
    """No placement: next_step draws interval_s +/- jitter_s as it always did."""
    assert next_poll_gap_s(samples, 30.0, timing) is None
    step = _step_at(30.0, samples, timing=timing, rand=lambda: 0.25)
    assert step == PollAgain(3.5)


@pytest.mark.parametrize(
    ("elapsed_s", "gap_s"),
    [
        (10.0, 5.0),  # none of them finishes within 4 s: the far end
        (200.0, 5.0),  # slower than every sample: nothing known, the far end
        (30.0, 5.0),  # 4 of the 89 still running: p = 0.045, the far end
        (112.0, 4 * (0.5 * 7 / 4) ** 0.5),  # 4 of the last 7: p = 0.57, a bit sooner
        (116.0, 3.0),  # all 3 left finish within 4 s: the near end
    ],
)
def test_each_gap_is_placed_by_the_chance_of_finishing(elapsed_s: float, gap_s: float) -> None:
    """gap = interval * sqrt(chance / p), within interval +/- jitter."""
    assert next_poll_gap_s(SPREAD, elapsed_s, PLACING) == pytest.approx(min(max(gap_s, 3), 5))


def test_gaps_stay_in_the_window_and_shrink_as_finishing_gets_likelier() -> None:
    """Sooner where completions are likely, never outside interval_s +/- jitter_s."""
    bunched = tuple([30.0] * 50 + [float(s) for s in range(40, 90)])
    gaps = [next_poll_gap_s(bunched, t / 4, PLACING) for t in range(0, 400)]
    assert all(gap is not None and 3.0 <= gap <= 5.0 for gap in gaps)
    assert next_poll_gap_s(bunched, 27.0, PLACING) == 4.0  # p = 0.5 = chance: interval_s
    assert next_poll_gap_s(bunched, 28.0, PLACING) == 4.0
    assert next_poll_gap_s(bunched, 38.0, PLACING) == 5.0  # then one a second: p = 3/50
    eager = PLACING.model_copy(update={"adaptive_chance": 0.05})
    assert next_poll_gap_s(bunched, 38.0, eager) == pytest.approx(4 * (0.05 * 50 / 3) ** 0.5)


def test_retry_after_and_the_deadline_still_rule_a_placed_poll() -> None:
    """A placed gap still yields to Retry-After, and never passes the deadline."""
    limited = RateLimited("429", retry_after_s=12.0)
    assert _step_at(10.0, SPREAD, error=limited) == PollAgain(12.0)
    assert _step_at(10.0, SPREAD, deadline=1_002.0) == PollAgain(2.0)


def _step_at(elapsed_s: float, samples: tuple[float, ...], **overrides: object) -> object:
    """next_step for a running job polled `elapsed_s` after its submit at 990 s."""
    running = RemoteTask(task_id="t", status=RemoteStatus.RUNNING, status_word="processing")
    call: dict[str, object] = {
        "remote": running,
        "error": None,
        "now": 990.0 + elapsed_s,
        "deadline": 990.0 + 180,
        "timing": TIMING,
        "rand": lambda: 0.5,
        "elapsed_s": elapsed_s,
        "samples": samples,
    }
    call.update(overrides)
    if call["error"] is not None:
        call["remote"] = None
    return next_step(**call)  # type: ignore[arg-type]  # built from a dict on purpose


def test_the_sample_cache_reads_once_per_refresh() -> None:
    """One read per kind of job per refresh_s, sorted; each kind on its own."""
    reads: list[tuple[str, str]] = []
    clock = [100.0]

    def load(quality: str, resolution: str) -> list[float]:
        reads.append((quality, resolution))
        return [30.0, 10.0, 20.0 + len(reads)]

    cache = SampleCache(load, refresh_s=30.0, clock=lambda: clock[0])
    assert cache.ordered("high", "1K") == (10.0, 21.0, 30.0)
    clock[0] = 129.9
    assert cache.ordered("high", "1K") == (10.0, 21.0, 30.0)
    assert cache.ordered("low", "4K") == (10.0, 22.0, 30.0)
    assert reads == [("high", "1K"), ("low", "4K")]
    clock[0] = 130.0
    assert cache.ordered("high", "1K") == (10.0, 23.0, 30.0)
    assert len(reads) == 3


def test_model_whole_schedule_meets_the_polls_target() -> None:
    """bench.adaptive_model on the realistic mix, paired with the fixed schedule on the same
    jobs: the default whole schedule polls at least 40 % less, with lag p99 no worse; the
    first poll alone saves about 30 %."""
    from bench.adaptive_model import simulate

    def run(timing: PollingSettings, *, placed: bool) -> tuple[float, float]:
        out = simulate(timing, jobs_per_cell=100, trials=10, seed=2, placed=placed)
        return out.polls_per_job, out.lag_p99_s

    fixed_polls, fixed_lag = run(PollingSettings(adaptive=False), placed=False)
    first_polls, _ = run(TIMING, placed=False)
    polls, lag = run(TIMING, placed=True)
    assert first_polls > 0.65 * fixed_polls
    assert polls <= 0.6 * fixed_polls
    assert lag <= fixed_lag
