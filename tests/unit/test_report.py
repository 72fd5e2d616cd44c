"""The batch report (HTML page) and the `top` dashboard on hand-made jobs; a real batch through
both commands and a browser is tests/e2e/test_report_e2e.py."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from imageq.ops.batch_report import build_report, thumbnail_uri, tick_step, write_report
from imageq.ops.top import Lag, lag, render, snapshot
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def make_job(
    n: int,
    status: JobStatus = JobStatus.SUCCEEDED,
    *,
    prompt: str = "a castle",
    created_s: float = 0.0,
    submitted_s: float | None = 0.5,
    finished_s: float | None = 3.0,
    outputs: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Job:
    """A job of batch `b1`, its times given in seconds after T0."""
    return Job(
        job_id=f"b1-{n:06d}",
        params={"prompt": prompt, "aspect_ratio": "16:9", "resolution": "1K", "quality": "high"},
        status=status,
        created_at=T0 + created_s,
        submitted_at=None if submitted_s is None else T0 + submitted_s,
        finished_at=None if finished_s is None else T0 + finished_s,
        outputs=outputs or [],
        batch_id="b1",
        **fields,
    )


def output(url: str, location: str | None, *, error: str | None = None) -> dict[str, Any]:
    saved = {"location": location, "width": 64, "height": 36} if location else None
    return {"url": url, "width": 64, "height": 36, "saved": saved, "download_error": error}


def page(jobs: list[Job], **options: Any) -> str:
    batch = Batch("b1", total=len(jobs), created_at=T0, counts={"succeeded": len(jobs)})
    return build_report(batch, dict(enumerate(jobs, 1)), **options)


def png_file(path: Path, size: tuple[int, int] = (640, 360)) -> Path:
    Image.linear_gradient("L").resize(size).convert("RGB").save(path)
    return path


def no_thumbnails(location: str, size_px: int) -> None:
    return None


# The report, pure.


def test_prompt_is_html_escaped() -> None:
    """A prompt holding markup shows as text, in the body and in the title attribute."""
    prompt = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    html = page([make_job(1, prompt=prompt)], load_thumbnail=None)
    assert "<script" not in html.lower()
    assert "<img" not in html
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x"
    assert html.count(escaped) == 2


def test_saved_output_is_embedded_as_png_thumbnail(tmp_path: Path) -> None:
    """A saved file becomes a data: PNG no larger than thumbnail_px on its longest side."""
    saved = png_file(tmp_path / "0.png")
    html = page([make_job(1, outputs=[output("https://x/0.png", str(saved))])], thumbnail_px=64)
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(sources) == 1
    with Image.open(io.BytesIO(base64.b64decode(sources[0]))) as thumb:
        assert thumb.format == "PNG"
        assert thumb.size == (64, 36)


def test_page_fetches_nothing(tmp_path: Path) -> None:
    """Every src is a data: URI, the only hrefs are output URLs, and a CSP forbids the rest."""
    saved = png_file(tmp_path / "0.png")
    jobs = [
        make_job(1, outputs=[output("https://cdn.example/1.png", str(saved))]),
        make_job(2, outputs=[output("https://cdn.example/2.png", None, error="HTTP 404")]),
        make_job(3, outputs=[output("javascript:alert(1)", None, error="HTTP 404")]),
    ]
    html = page(jobs)
    sources = re.findall(r'\ssrc="([^"]*)"', html)
    assert sources
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert re.findall(r'\shref="([^"]*)"', html) == ["https://cdn.example/2.png"]
    assert not re.search(r"<(link|script|iframe|object|embed)\b|@import|url\(", html, re.I)
    assert "Content-Security-Policy\" content=\"default-src 'none'; img-src data:;" in html


def test_unsaved_output_shows_url_and_download_error() -> None:
    """An output not saved: a placeholder naming its URL and why it was not saved."""
    job = make_job(1, outputs=[output("https://cdn.example/1.png", None, error="HTTP 404 <x>")])
    html = page([job])
    assert "<img" not in html
    assert 'class="placeholder"' in html
    assert "https://cdn.example/1.png" in html
    assert "HTTP 404 &lt;x&gt;" in html


def test_failed_job_shows_its_error() -> None:
    """A failed job's card shows the error type and message."""
    error = {"type": "RemoteFailed", "message": "simulated generation failure"}
    html = page([make_job(1, JobStatus.FAILED, error=error)])
    assert "RemoteFailed: simulated generation failure" in html
    assert 'class="badge s-failed"' in html


def test_timing_chart_has_a_bar_per_job_with_wait_and_generation() -> None:
    """Well-formed SVG; one bar group per job; wait and generation as two rects, to scale."""
    jobs = [
        make_job(1, submitted_s=1.0, finished_s=5.0),
        make_job(2, JobStatus.QUEUED, submitted_s=None, finished_s=None),
        make_job(3, JobStatus.SUBMITTED, created_s=0.5, submitted_s=2.0, finished_s=None),
    ]
    html = page(jobs)
    found = re.search(r"<svg.*?</svg>", html, re.S)
    assert found is not None
    svg = ET.fromstring(found.group(0))  # noqa: S314 -- our own page, built just above
    bars = svg.findall("g")
    assert [bar.get("data-job") for bar in bars] == [job.job_id for job in jobs]
    rects = [bar.findall("rect") for bar in bars]
    assert [len(r) for r in rects] == [2, 1, 2]
    wait, generation = rects[0]
    assert float(generation.get("width", 0)) == pytest.approx(4 * float(wait.get("width", 0)))
    assert rects[1][0].get("opacity") == ".45"  # not submitted yet: faded to the chart's end
    assert "5 s" in [text.text for text in svg.findall("text")]


def test_header_counts_and_total_time() -> None:
    """Counts per status from the batch, and the time from creation to completion."""
    batch = Batch("b1", total=3, created_at=T0, completed_at=T0 + 12.5,
                  counts={"succeeded": 2, "failed": 1})  # fmt: skip
    html = build_report(batch, {1: make_job(1)}, load_thumbnail=no_thumbnails)
    assert '<li class="chip s-succeeded"><b>2</b>succeeded</li>' in html
    assert '<li class="chip s-failed"><b>1</b>failed</li>' in html
    assert '<li class="chip s-queued zero"><b>0</b>queued</li>' in html
    assert "complete · 12.5 s total" in html


@pytest.mark.parametrize(
    ("span_s", "step_s"), [(7.0, 1.0), (0.4, 0.05), (45.0, 10.0), (100.0, 20.0), (3600.0, 500.0)]
)
def test_tick_step_is_round(span_s: float, step_s: float) -> None:
    """1, 2 or 5 times a power of ten, at most about 8 ticks."""
    assert tick_step(span_s) == pytest.approx(step_s)


@pytest.mark.parametrize("location", ["missing.png", "not-an-image.png", "s3://bucket/0.png"])
def test_thumbnail_of_unreadable_location_is_none(tmp_path: Path, location: str) -> None:
    """Gone, not an image, or remote: no thumbnail (the card shows a placeholder)."""
    (tmp_path / "not-an-image.png").write_text("hello")
    target = location if "://" in location else str(tmp_path / location)
    assert thumbnail_uri(target, 64) is None


def test_thumbnail_from_file_url(tmp_path: Path) -> None:
    """A file:// location is read like a path."""
    uri = thumbnail_uri(png_file(tmp_path / "0.png").as_uri(), 32)
    assert uri is not None
    assert uri.startswith("data:image/png;base64,")


def test_write_report_replaces_whole_file(tmp_path: Path) -> None:
    """Parents are made; the absolute path is returned; no partial file is left."""
    path = write_report(tmp_path / "a" / "b.html", "<p>one</p>")
    assert path == (tmp_path / "a" / "b.html").resolve()
    assert write_report(path, "<p>two</p>").read_text() == "<p>two</p>"
    assert [p.name for p in path.parent.iterdir()] == ["b.html"]


# The dashboard, pure.


def test_snapshot_counts_and_in_flight() -> None:
    """Counts per status over all jobs; in flight = queued + submitted; oldest first."""
    jobs = [
        make_job(1, JobStatus.QUEUED, created_s=5, submitted_s=None, finished_s=None),
        make_job(2, JobStatus.SUBMITTED, created_s=1, finished_s=None),
        make_job(3),
        make_job(4),
        make_job(5, JobStatus.CANCELLED),
    ]
    shot = snapshot(jobs, {}, now=T0 + 10)
    assert shot.counts[JobStatus.SUCCEEDED] == 2
    assert shot.counts[JobStatus.CANCELLED] == 1
    assert shot.counts[JobStatus.FAILED] == 0
    assert shot.in_flight == 2
    assert [(job.job_id, job.age_s) for job in shot.oldest_in_flight] == [
        ("b1-000002", 9.0),
        ("b1-000001", 5.0),
    ]


def test_snapshot_throughput_over_the_window() -> None:
    """Jobs finished within the window, per minute; older and unfinished ones do not count."""
    inside = [make_job(n, finished_s=1000 - n) for n in range(10)]
    outside = [make_job(100, finished_s=600), make_job(101, JobStatus.SUBMITTED, finished_s=None)]
    shot = snapshot(inside + outside, {}, now=T0 + 1000, window_s=300)
    assert shot.finished_in_window == 10
    assert shot.throughput_per_min == pytest.approx(2.0)


def test_snapshot_lag_percentiles() -> None:
    """p50/p99 of finished - submitted, and of the first 2xx webhook attempt - finished."""
    jobs = [make_job(n, submitted_s=100.0, finished_s=100.0 + n) for n in range(1, 101)]
    attempts = [{"at": T0 + 101.5, "http_status": 500}, {"at": T0 + 103, "http_status": 204}]
    jobs[0] = make_job(1, submitted_s=100.0, finished_s=101.0, webhook_attempts=attempts)
    shot = snapshot(jobs, {}, now=T0 + 200)
    assert (shot.generation.count, shot.generation.p50_s, shot.generation.p99_s) == (100, 50, 99)
    assert shot.queue_wait.p50_s == pytest.approx(100.0)
    assert shot.webhook_delivery.count == 1
    assert shot.webhook_delivery.p50_s == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("delays_s", "expected"),
    [([], Lag(0, None, None)), ([7.0], Lag(1, 7.0, 7.0)), ([3.0, 1.0, 2.0], Lag(3, 2.0, 3.0)),
     ([float(n) for n in range(1, 101)], Lag(100, 50.0, 99.0))],
)  # fmt: skip
def test_lag_is_nearest_rank_p50_and_p99(delays_s: list[float], expected: Lag) -> None:
    """Nearest rank: always one of the delays; None for none."""
    assert lag(delays_s) == expected


def test_snapshot_recent_failures_newest_first_with_reasons() -> None:
    """The latest 10 failures, job errors and dead webhooks together, with their reasons."""
    error = {"type": "ApiError", "message": "refused", "http_status": 400}
    jobs = [make_job(n, JobStatus.FAILED, finished_s=n, error=error) for n in range(12)]
    dead = {"b1-000099": {"reason": "HTTP 410", "at": T0 + 50, "attempts": 3}}
    shot = snapshot([*jobs, make_job(50, JobStatus.TIMED_OUT, finished_s=40)], dead, now=T0 + 60)
    failures = shot.recent_failures
    assert len(failures) == 10
    assert [f.kind for f in failures[:3]] == ["webhook dead", "timed_out", "failed"]
    assert failures[0].reason == "HTTP 410"
    assert failures[2].reason == "ApiError (HTTP 400): refused"
    assert shot.dead_letters == 1


def test_render_shows_every_part() -> None:
    """The frame names its tables and numbers."""
    shot = snapshot([make_job(1), make_job(2, JobStatus.SUBMITTED, finished_s=None)], {},
                    now=T0 + 10)  # fmt: skip
    console = Console(record=True, width=140)
    console.print(render(shot, limit=2))
    text = console.export_text()
    expected = ["imageq top", "1 in flight", "jobs by status", "finished / min"]
    expected += ["oldest in flight", "b1-000002", "recent failures", "first 2 records read"]
    for words in expected:
        assert words in text
