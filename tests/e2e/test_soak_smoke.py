"""The soak's smoke mode (`python -m bench.soak --smoke`): about 50 jobs at a tenth of
production timing, with every kind of fault at least once, in well under two minutes. It
checks the driver itself: every fault injected and timed, every job accounted for, the
guarantees checked, the report rendered from the results, and no process left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak_report import render_markdown

REPO = Path(__file__).resolve().parents[2]
KINDS = {
    "worker_sigkill",
    "redis_restart",
    "api_outage",
    "receiver_down",
    "api_429_burst",
    "api_503_burst",
    "api_mixed_burst",
}

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_soak_smoke_injects_every_fault_and_checks_every_job(tmp_path: Path) -> None:
    """Every fault kind happens and is timed; every job ends as the simulator made it end, none
    lost, submitted twice or notified twice; every job held up moves on within the bound;
    nothing the run started is left running."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--smoke",
         "--out", str(tmp_path / "out"), "--logs", str(tmp_path / "logs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )  # fmt: skip
    # 0: every check passed; 1: some check failed; 2: the run itself failed.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())

    assert set(results["faults"]["counts"]) == KINDS
    for event in results["faults"]["events"]:
        assert None not in (event["at_s"], event["end_s"]), event
    assert results["jobs"]["enqueued"] == results["plan"]["jobs"] == 50
    checks = results["checks"]
    assert checks["lost"]["passed"], checks["lost"]
    assert checks["submitted_twice"]["passed"], checks["submitted_twice"]
    assert checks["notified_twice"]["passed"], checks["notified_twice"]
    assert checks["outcomes"]["passed"], checks["outcomes"]
    assert results["passed"]
    for fault in results["recovery"]["per_fault"]:
        assert fault["recovery"]["never_moved"] == 0, fault
    assert results["recovery"]["samples"] > 100

    report = (tmp_path / "out" / "report.md").read_text()
    assert report == render_markdown(results)
    assert report.startswith("# imageq soak (smoke)")
    for pid in results["processes_started"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
