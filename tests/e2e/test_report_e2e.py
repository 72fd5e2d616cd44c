"""The batch report and `top` end to end: a real batch through the worker, both commands, and
the page rendered in headless Chromium (Debian's; the test skips where it is absent).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from imageq.cli.operate import report, top
from imageq.config import get_settings
from imageq.devenv.worker_process import WorkerProcess, settings_env
from imageq.producers.api import ImageQueue
from tests.conftest import wait_for

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).parents[2] / "docs" / "report-screenshot.png"


@pytest.fixture(scope="module")
def cli_settings(settings_values: dict[str, Any]) -> Iterator[None]:
    """Point `get_settings()` at this test session's Redis, simulator and storage."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings_env(settings_values).items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(top)
    app.command()(report)
    return app


@pytest.fixture(scope="module")
def finished_batch(worker: WorkerProcess, queue: ImageQueue) -> str:
    """Four jobs of different ratios and times, and one that fails, run to the end with their
    outputs saved."""
    rows = [
        {"prompt": "castle at dusk <script>alert(1)</script>", "aspect_ratio": "16:9"},
        {"prompt": "a fox in tall grass sim:latency=1.4", "aspect_ratio": "9:16"},
        {"prompt": "lighthouse, stormy sea sim:latency=1", "aspect_ratio": "1:1"},
        {"prompt": "desert road at noon", "aspect_ratio": "21:9"},
        {"prompt": "a river in spring sim:fail", "aspect_ratio": "3:2"},
    ]
    batch_id = f"report-{uuid.uuid4().hex[:8]}"
    queue.enqueue_many(
        [{**row, "resolution": "1K", "quality": "low"} for row in rows], batch_id=batch_id
    )

    def settled() -> bool:
        jobs = queue.batch_jobs(batch_id)
        return queue.batch(batch_id).is_complete and all(job.is_settled for job in jobs.values())

    wait_for(settled, timeout_s=30, what=f"batch {batch_id} to finish with outputs saved")
    return batch_id


@pytest.fixture(scope="module")
def report_html(
    cli: typer.Typer,
    cli_settings: None,
    finished_batch: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(cli, ["report", finished_batch, "--html", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(path.resolve())
    return path


@pytest.mark.e2e
def test_report_command_writes_the_batch(report_html: Path, finished_batch: str) -> None:
    """Every job's card with its embedded thumbnail (or its error), escaped prompt, and a
    timing bar."""
    html = report_html.read_text()
    assert html.count('<img src="data:image/png;base64,') == 4
    assert html.count('<g class="bar"') == 5
    assert "castle at dusk &lt;script&gt;" in html
    assert f"{finished_batch}-000005" in html
    assert '<li class="chip s-succeeded"><b>4</b>succeeded</li>' in html
    assert '<li class="chip s-failed"><b>1</b>failed</li>' in html
    assert "simulated generation failure" in html


@pytest.mark.e2e
def test_report_of_unknown_batch_exits_3(
    cli: typer.Typer, cli_settings: None, tmp_path: Path
) -> None:
    """No such batch: exit 3, nothing written."""
    result = CliRunner().invoke(
        cli, ["report", "no-such-batch", "--html", str(tmp_path / "x.html")]
    )
    assert result.exit_code == 3
    assert "no batch 'no-such-batch'" in result.stderr
    assert not (tmp_path / "x.html").exists()


@pytest.mark.e2e
def test_top_once_prints_one_frame(
    cli: typer.Typer, cli_settings: None, finished_batch: str
) -> None:
    """--once: one frame of every table, exit 0."""
    result = CliRunner().invoke(cli, ["top", "--once"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for words in ("imageq top", "jobs by status", "succeeded", "finished / min", "recent failures"):
        assert words in result.stdout
    counts = re.search(r"succeeded\s*│\s*(\d+)", result.stdout)
    assert counts is not None
    assert int(counts.group(1)) >= 4


@pytest.mark.e2e
def test_report_renders_in_headless_chromium(report_html: Path, tmp_path: Path) -> None:
    """Debian's Chromium loads the page from file:// and its screenshot is a real picture."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium")
    screenshot = tmp_path / "report.png"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={screenshot}", "--window-size=1280,1600", report_html.as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(screenshot) as shot:
        assert shot.size == (1280, 1600)
        colours = shot.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None
    assert len(colours) > 500, "a near-blank screenshot"
    if os.environ.get("IMAGEQ_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, SCREENSHOT)
