"""The benchmark's report on hand-made results: ratios with their per-pair range, the load
average of their rounds, the floor and its multiples, the reproduction check, the plan's
pairs. A real run through all of it is tests/e2e/test_bench_smoke.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import reproduce
from bench.floor_model import (
    FLOOR_PIECES,
    PER_JOB,
    PER_POLL,
    Floor,
    floor_of,
    job_multiple,
    poll_multiple,
)
from bench.measures import Spread, most_at_once, spread_of
from bench.pairing import load_text, ratio_spread_at
from bench.report import write_report
from bench.run import parse_args, plan

REPO = Path(__file__).resolve().parents[2]
# CPU µs per call at the run's start; the end's api_get is 600, so the mean is 500.
START_US = {"api_get": 400.0, "api_post": 700.0, "webhook_post": 300.0, "cas": 90.0,
            "parse": 10.0, "publish": 400.0}  # fmt: skip
END_US = {**START_US, "api_get": 600.0}
# Per poll: 500 + 10 + 90 = 600 µs. Per job beyond polls: 700 + 300 + 4 x 90 + 400 = 1,760 µs.
POLL_FLOOR_S = 600e-6
JOB_EXTRA_S = 1760e-6


def measured(piece_us: dict[str, float], loads: list[float]) -> dict[str, Any]:
    pieces = {name: {"median_us": value, "min_us": value * 0.9, "max_us": value * 1.1}
              for name, value in piece_us.items()}  # fmt: skip
    return {"calls": 400, "reps": 3, "loadavg": loads, "pieces": pieces}


def round_of(design: str, n: int, rep: int, *, cpu_s: float, polls: float = 5.0,
             loads: tuple[float, float] | None = (1.0, 1.5)) -> dict[str, Any]:  # fmt: skip
    """A round's result: every job completed and notified once; the given CPU and polls."""
    result: dict[str, Any] = {
        "design": design, "n": n, "rep": rep, "generation_s_mean": 10.0, "completed": n,
        "notified_once": n, "notifications_max": 1, "lag_p50_s": 0.5, "lag_p99_s": 1.0,
        "lag_max_s": 1.2, "polls_per_job": polls, "polls_max": 9, "submits_per_job": 1.0,
        "submits_max": 1, "cpu_s_per_job": cpu_s, "idle_cpu_ms_per_s": 1.0, "rss_idle_mb": 100.0,
        "rss_peak_mb": 110.0, "rss_growth_kb_per_job": 5.0, "redis_kb_per_job": 1.0,
        "submit_s": 1.0, "all_notified_s": 30.0, "peak_poll_rate": 100.0,
        "machine_busy_pct": 50.0,
    }  # fmt: skip
    if loads is not None:
        result["loadavg_start"], result["loadavg_end"] = loads
    return result


def meta_of(*, floor: bool = True, mode: str = "poller") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "facts": {"date": "2026-12-07 05:00 UTC", "command": "python -m bench.run --n 1000",
                  "imageq": f"polling mode {mode}"},
        "polling_mode": mode, "scale": 0.3, "processes": 2, "interval_s": 1.2,
        "production_interval_s": 4.0, "lag_target_s": 1.8, "title": "times x 0.3",
    }  # fmt: skip
    if floor:
        meta["floor"] = {"start": measured(START_US, [0.5, 0.7]),
                         "end": measured(END_US, [2.0, 2.5])}  # fmt: skip
    return meta


# imageq/naive CPU per pair at N = 1,000: 1.2, 1.0, 1.5; N = 3,000 once: 0.8.
NAIVE_CPU_S = 0.01
RESULTS = [
    round_of("imageq", 1000, 0, cpu_s=0.012, loads=(0.5, 0.9)),
    round_of("naive", 1000, 0, cpu_s=NAIVE_CPU_S),
    round_of("naive", 1000, 1, cpu_s=NAIVE_CPU_S),
    round_of("imageq", 1000, 1, cpu_s=0.010),
    round_of("imageq", 1000, 2, cpu_s=0.015),
    round_of("naive", 1000, 2, cpu_s=NAIVE_CPU_S, loads=(1.8, 2.5)),
    round_of("imageq", 3000, 0, cpu_s=0.008, loads=(3.0, 3.5)),
    round_of("naive", 3000, 0, cpu_s=NAIVE_CPU_S, loads=(3.0, 3.1)),
]


def report(tmp_path: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    path = tmp_path / "report.md"
    write_report(path, results, meta, notes=[])
    return path.read_text()


@pytest.mark.parametrize(
    ("values", "text"),
    [([1.2, 1.0, 1.5], "1.20 (1.00-1.50)"), ([0.88], "0.88 (one pair, no spread)"),
     ([float("nan")], "-"), ([2.0, float("nan"), 1.0], "1.50 (1.00-2.00)")],
)  # fmt: skip
def test_spread_is_median_with_min_and_max(values: list[float], text: str) -> None:
    """Median (min-max) of the values that are not NaN; one value says it has no spread."""
    assert spread_of(values).text() == text


def test_ratio_is_taken_within_each_pair() -> None:
    """The per-pair ratios of the same repetition, not a ratio of medians."""
    found = ratio_spread_at(RESULTS, 1000, "cpu_s_per_job")
    assert (found.median, found.low, found.high, found.count) == pytest.approx((1.2, 1.0, 1.5, 3))


def test_load_range_spans_every_round_start_and_end() -> None:
    """The lowest and highest 1-minute load average sampled over the rounds; older results
    without samples say so."""
    at_1000 = [r for r in RESULTS if r["n"] == 1000]
    assert load_text(at_1000) == "load average 0.50-2.50"
    assert load_text([round_of("imageq", 100, 0, cpu_s=0.01, loads=None)]) == (
        "load average not measured"
    )


def test_report_shows_each_ratio_with_its_range_and_one_pair_as_such(tmp_path: Path) -> None:
    """Three pairs: median (min-max) and the load range in the heading; one pair: no spread."""
    text = report(tmp_path, RESULTS, meta_of())
    assert (
        "### N = 1,000 in flight (3 imageq/naive pairs: ratio = median of the per-pair ratios"
        " (min-max); load average 0.50-2.50)"
    ) in text
    assert "| worker CPU-seconds per job | 0.0120 | 0.0100 | 1.20 (1.00-1.50) |" in text
    assert (
        "### N = 3,000 in flight (one imageq/naive pair: ratios without spread, not a "
        "reproducible figure; load average 3.00-3.50)"
    ) in text
    assert "| worker CPU-seconds per job | 0.0080 | 0.0100 | 0.80 (one pair) |" in text


def test_floor_is_the_mean_of_start_and_end_and_counts_what_it_says() -> None:
    """Per poll: GET + parse + CAS; per job: POST + webhook + 4 CAS + a publish + polls."""
    floor = floor_of(meta_of())
    assert floor is not None
    assert floor.piece_us["api_get"] == pytest.approx(500.0)
    assert floor.per_poll_s() == pytest.approx(POLL_FLOOR_S)
    assert floor.per_job_s(5.0) == pytest.approx(JOB_EXTRA_S + 5 * POLL_FLOOR_S)
    assert floor.per_job_s(5.0, with_poll_publishes=True) == pytest.approx(
        JOB_EXTRA_S + 5 * POLL_FLOOR_S + 4 * 400e-6
    )
    # The per-poll floor went from 500 µs at the start to 700 at the end.
    assert floor.drift() == pytest.approx(0.4)


def test_multiples_of_the_floor() -> None:
    """CPU per job over the per-job floor at the round's polls; CPU per poll (CPU per job /
    polls per job) over the per-poll floor."""
    floor = Floor(START_US, END_US)
    result = round_of("imageq", 1000, 0, cpu_s=2 * (JOB_EXTRA_S + 5 * POLL_FLOOR_S))
    assert job_multiple(result, floor) == pytest.approx(2.0)
    assert poll_multiple(result, floor) == pytest.approx(result["cpu_s_per_job"] / 5 / 600e-6)


def test_report_shows_floor_multiples_and_the_floor_target(tmp_path: Path) -> None:
    """The floor section, the multiples per design, the target row at N = 1,000."""
    at_floor = JOB_EXTRA_S + 5 * POLL_FLOOR_S  # 4.76 ms
    results = [
        round_of("imageq", 1000, rep, cpu_s=at_floor * multiple)
        for rep, multiple in enumerate((2.0, 2.5, 3.5))
    ] + [round_of("naive", 1000, rep, cpu_s=0.02) for rep in range(3)]
    text = report(tmp_path, results, meta_of())
    assert "**Per-poll floor** (API GET + `json.loads` of an answer + compare-and-set): " \
           "**0.600 ms**; from the run's start to its end it moved +40.0%." in text  # fmt: skip
    assert "| 1,000 | imageq | 3 | 5.00 | 11.9 (9.5-16.7) | 4.76 | **2.50 (2.00-3.50)** |" in text
    assert "| worker CPU per job ≤ 3 x the per-job floor (the poller's target; see the floor) |" \
           " 2.50 (2.00-3.50) x | ✅ |" in text  # fmt: skip
    assert "| worker CPU-seconds per job ≤ 0.45 x naive (poller mode) | 0.59 (0.48-0.83) x | ❌ |" \
        in text  # fmt: skip
    # Memory and lag: the median over imageq's runs with their range; poller's RSS bound is 5 KB.
    assert "| worker RSS growth ≤ 5 KB per job in flight (poller mode): (peak - idle) / N |" \
           " 5.00 (5.00-5.00) KB | ✅ |" in text  # fmt: skip
    assert "= 1.80 s | 1.00 (1.00-1.00) s | ✅ |" in text


def test_results_without_the_new_fields_still_render(tmp_path: Path) -> None:
    """No floor, no load samples (results from before): the report says "not measured"."""
    results = [round_of(d, 1000, rep, cpu_s=0.01, loads=None)
               for rep in range(3) for d in ("imageq", "naive")]  # fmt: skip
    meta = meta_of(floor=False, mode="countdown")
    del meta["polling_mode"]
    text = report(tmp_path, results, meta)
    assert "The floor was not measured in this run" in text
    assert "load average not measured" in text
    assert "| worker CPU per job ≤ 3 x the per-job floor (the poller's target; see the floor) |" \
           " not measured | - |" in text  # fmt: skip
    assert "≤ 1 x naive (countdown mode)" in text


def test_committed_results_render(tmp_path: Path) -> None:
    """The results.json committed before the floor was measured renders in full."""
    saved = json.loads((REPO / "bench/results/results.json").read_text())
    text = report(tmp_path, saved["results"], saved["meta"])
    assert "## The floor, measured in this run" in text
    assert "### N = 3,000 in flight (one imageq/naive pair" in text


@pytest.mark.parametrize(
    ("new", "verdict", "overlap"),
    [(Spread(1.1, 1.05, 1.3, 3), reproduce.REPRODUCED, 0.15),
     (Spread(1.3, 1.15, 1.4, 3), reproduce.OVERLAP, 0.05),
     (Spread(1.5, 1.4, 1.6, 3), reproduce.NOT_REPRODUCED, -0.2)],
)  # fmt: skip
def test_reproduction_check(new: Spread, verdict: str, overlap: float) -> None:
    """Against a committed 1.10 (1.00-1.20): within, overlapping, or apart (by how much)."""
    check = reproduce.Check(Spread(1.1, 1.0, 1.2, 3), new)
    assert check.verdict == verdict
    assert check.overlap == pytest.approx(overlap)
    assert check.difference == pytest.approx(new.median - 1.1)


def test_reproduction_of_one_pair_has_no_range_to_check() -> None:
    """A committed figure of one pair gives only the difference."""
    assert reproduce.Check(Spread(0.8, 0.8, 0.8, 1), Spread(0.9, 0.8, 1.0, 3)).verdict == (
        reproduce.NO_RANGE
    )


def test_reproduce_command_compares_two_results_files(tmp_path: Path) -> None:
    """A run against a copy of itself reproduces every figure, floor multiples included."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta": meta_of(), "results": RESULTS}))
    assert reproduce.main([str(path), str(tmp_path), "--out", str(tmp_path / "check.md")]) == 0
    text = (tmp_path / "check.md").read_text()
    assert "| 1,000 | worker CPU per job, imageq/naive | 1.200 (1.000-1.500) |" \
           " 1.200 (1.000-1.500) | +0.000 | +0.500 | reproduced" in text  # fmt: skip
    assert "| 1,000 | imageq CPU per job, x per-job floor |" in text
    assert "| 3,000 | worker CPU per job, imageq/naive | 0.800 (one pair, no spread) |" in text
    moved = [{**r, "cpu_s_per_job": r["cpu_s_per_job"] * (2 if r["design"] == "imageq" else 1)}
             for r in RESULTS]  # fmt: skip
    (tmp_path / "moved.json").write_text(json.dumps({"meta": meta_of(), "results": moved}))
    assert reproduce.main([str(path), str(tmp_path / "moved.json")]) == 1


def test_plan_runs_each_pair_back_to_back_on_the_same_jobs(tmp_path: Path) -> None:
    """Each repetition's two rounds are adjacent and share a seed; the order alternates;
    N above --single-above runs one pair."""
    rounds = plan(parse_args(["--n", "100,3000", "--reps", "3"]), tmp_path)
    assert [(r.n, r.rep, r.design) for r in rounds] == [
        (100, 0, "imageq"), (100, 0, "naive"), (100, 1, "naive"), (100, 1, "imageq"),
        (100, 2, "imageq"), (100, 2, "naive"), (3000, 0, "imageq"), (3000, 0, "naive"),
    ]  # fmt: skip
    for first, second in zip(rounds[::2], rounds[1::2], strict=True):
        assert (first.n, first.rep, first.seed) == (second.n, second.rep, second.seed)
    assert len({r.seed for r in rounds}) == 4


def test_floor_pieces_cover_the_model() -> None:
    """Every piece the floor counts is one bench.floor measures."""
    assert set(PER_POLL) | set(PER_JOB) == set(FLOOR_PIECES)


@pytest.mark.parametrize(
    ("spans", "most"),
    [([], 0), ([(0.0, 1.0), (2.0, 3.0)], 1), ([(0.0, 3.0), (1.0, 2.0), (1.5, 4.0)], 3),
     ([(0.0, 1.0), (1.0, 2.0)], 1)],
)  # fmt: skip
def test_most_jobs_in_flight_at_once(spans: list[tuple[float, float]], most: int) -> None:
    """The most spans open at one instant; one ending as the next starts is not both."""
    assert most_at_once(spans) == most


def test_stretch_is_checked_on_production_timing_poller_runs_only(tmp_path: Path) -> None:
    """10,000 at once within the bound: met; fewer held at once, or late: not; at x 0.3 or in
    countdown mode the stretch is not shown."""
    production = {**meta_of(mode="poller"), "scale": 1, "lag_target_s": 6.0}
    held = {**round_of("imageq", 12000, 0, cpu_s=0.008), "peak_in_flight": 10400, "lag_p99_s": 5.5}
    short = {**held, "rep": 1, "peak_in_flight": 9100}
    late = {**held, "rep": 2, "lag_p99_s": 6.5}
    text = report(tmp_path, [held, short, late], production)
    assert "| 12,000 | 10,400 | 5.50 | 1.00-1.50 | ✅ |" in text
    assert "| 12,000 | 9,100 | 5.50 | 1.00-1.50 | ❌ |" in text
    assert "| 12,000 | 10,400 | 6.50 | 1.00-1.50 | ❌ |" in text
    assert "Stretch" not in report(tmp_path, [held], meta_of(mode="poller"))
    assert "Stretch" not in report(tmp_path, [held], {**production, "polling_mode": "countdown"})
