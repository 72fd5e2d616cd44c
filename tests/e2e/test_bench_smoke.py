"""The benchmark's smoke version (`python -m bench.run --smoke`): N = 20, one run of each design,
completion times of 1-3 s, a brief floor at start and end, so the whole pipeline is checked in
well under a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.floor import EXTRA_PIECES
from bench.floor_model import FLOOR_PIECES

REPO = Path(__file__).resolve().parents[2]
N = 20


@pytest.mark.e2e
def test_bench_smoke_completes_both_designs_and_writes_the_report(tmp_path: Path) -> None:
    """Both designs complete every job, notify each once, submit each once; the floor is
    measured at start and end, the load average at each round's start and end; report and plot
    are written, and the run reproduces itself by `bench.reproduce`."""
    for module in ("gevent", "matplotlib"):
        pytest.importorskip(module, reason="the benchmark's extra: pip install -e '.[bench]'")
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = json.loads((tmp_path / "results.json").read_text())
    results = saved["results"]
    assert sorted(result["design"] for result in results) == ["imageq", "naive"]
    for when in ("start", "end"):
        pieces = saved["meta"]["floor"][when]["pieces"]
        assert sorted(pieces) == sorted(FLOOR_PIECES)
        assert all(figure["min_us"] > 0 for figure in pieces.values()), pieces
    for result in results:
        assert 0 <= result["loadavg_start"] < 100, result
        assert 0 <= result["loadavg_end"] < 100, result
        assert result["completed"] == N, result
        assert result["notified_once"] == N, result
        assert result["notifications_max"] == 1, result
        assert result["submits_per_job"] == 1.0, result
        assert result["submits_max"] == 1, result
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# imageq benchmark")
    assert "**Per-poll floor**" in report
    assert "| 20 | imageq | 1 |" in report  # its row of floor multiples
    assert "### N = 20 in flight (one imageq/naive pair: ratios without spread" in report
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The report can be written again from results.json alone, to the same text.
    (tmp_path / "report.md").unlink()
    again = [sys.executable, "-m", "bench.run", "--render", "--out", str(tmp_path)]
    subprocess.run(again, cwd=REPO, capture_output=True, timeout=60, check=True)
    assert (tmp_path / "report.md").read_text() == report
    same = [sys.executable, "-m", "bench.reproduce", str(tmp_path), str(tmp_path)]
    checked = subprocess.run(same, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "| 20 | worker CPU per job, imageq/naive |" in checked.stdout


@pytest.mark.e2e
def test_floor_measures_every_piece_of_a_poll(tmp_path: Path) -> None:
    """`python -m bench.floor`, briefly: every piece measured, each a positive CPU per call."""
    brief = ["--calls", "20", "--reps", "1", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", *brief],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pieces = json.loads((tmp_path / "results.json").read_text())["pieces"]
    assert sorted(pieces) == sorted((*FLOOR_PIECES, *EXTRA_PIECES))
    assert all(figure["min_us"] > 0 for figure in pieces.values()), pieces
    assert "| webhook POST (imageq's sender) |" in (tmp_path / "report.md").read_text()
