"""Adaptive first poll: a low percentile of recent generation times, clamped, or the default."""

from __future__ import annotations

import pytest

from imageq.config import PollingSettings
from imageq.worker.policy.adaptive import first_poll_base_s, percentile
from imageq.worker.policy.polling import first_poll_delay_s
from imageq.worker.upstream.responses import parse_task

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
