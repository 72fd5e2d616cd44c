"""A batch as one self-contained HTML page: a contact sheet of its images and a timing chart.

The page makes no request of its own: styles are inline, the chart is inline SVG, thumbnails
are `data:` URIs, and a Content-Security-Policy forbids anything else, so it can be mailed or
archived and still show everything. Output URLs appear only as text and plain links.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from urllib.request import url2pathname

from PIL import Image

from imageq.ops.palette import STATUS_COLOURS
from imageq.worker.domain.batch import Batch
from imageq.worker.domain.cost import credits_text
from imageq.worker.domain.job import Job
from imageq.worker.domain.status import JobStatus

ThumbnailLoader = Callable[[str, int], str | None]
"""(saved location, longest side in px) -> a `data:image/png;base64,` URI, or None."""

WAIT_COLOUR: Final = "#fbbf24"
GENERATION_COLOUR: Final = "#6366f1"
_CSP: Final = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS: Final = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#1f2937;font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif}
main{max-width:1200px;margin:0 auto;padding:32px 28px 48px}
header{margin-bottom:28px}
.eyebrow{font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:#6b7280}
h1{margin:4px 0 6px;font-size:28px;font-weight:650;letter-spacing:-.01em}
h2{margin:0 0 14px;font-size:17px;font-weight:600}
.sub{margin:0 0 16px;color:#4b5563}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin:0;padding:0;list-style:none}
.chip{padding:4px 12px;border-radius:999px;font-size:13px}
.chip b{font-size:15px;margin-right:4px}
.chip.zero{opacity:.45}
section{background:#fff;border:1px solid #e5e7eb;border-radius:12px;padding:20px 22px;
margin-bottom:24px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.chart svg{width:100%;height:auto;display:block}
.chart text{font:12px system-ui,"DejaVu Sans",sans-serif;fill:#4b5563}
.legend{display:flex;gap:18px;margin-top:8px;font-size:13px;color:#4b5563}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:6px;
vertical-align:-1px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(var(--thumb),1fr));gap:18px}
.card{border:1px solid #e5e7eb;border-radius:10px;overflow:hidden;background:#fff;
display:flex;flex-direction:column}
.thumb{aspect-ratio:1;display:grid;grid-auto-flow:column;grid-auto-columns:1fr;gap:8px;
padding:12px;background:#eef0f3;overflow:hidden}
.cell{position:relative;min-width:0}
.cell img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain;
filter:drop-shadow(0 1px 3px rgba(0,0,0,.25))}
.placeholder{width:100%;height:100%;border:2px dashed #cbd5e1;border-radius:6px;padding:12px;
display:flex;flex-direction:column;justify-content:center;gap:6px;font-size:12px;
color:#64748b;overflow-wrap:anywhere;text-align:center}
.placeholder a{color:#1d4ed8}
.meta{padding:12px 14px 14px;display:flex;flex-direction:column;gap:8px;flex:1}
.top{display:flex;justify-content:space-between;align-items:center}
.badge{font-size:12px;font-weight:600;padding:2px 9px;border-radius:999px}
.secs{font-size:13px;color:#6b7280;font-variant-numeric:tabular-nums}
.prompt{margin:0;font-weight:500;display:-webkit-box;-webkit-line-clamp:4;
-webkit-box-orient:vertical;overflow:hidden;overflow-wrap:anywhere}
.params{display:flex;flex-wrap:wrap;gap:6px;margin:0;padding:0;list-style:none;font-size:12px}
.params li{background:#f3f4f6;border-radius:6px;padding:2px 7px;color:#374151}
.error{margin:0;font-size:13px;color:#b91c1c;background:#fef2f2;border-radius:6px;
padding:6px 8px;overflow-wrap:anywhere}
.id{margin-top:auto;font:12px ui-monospace,"DejaVu Sans Mono",monospace;color:#6b7280;
overflow-wrap:anywhere}
footer{color:#9ca3af;font-size:12px;text-align:center}
"""


def build_report(
    batch: Batch,
    jobs: dict[int, Job],
    *,
    thumbnail_px: int = 256,
    load_thumbnail: ThumbnailLoader | None = None,
) -> str:
    """The batch's page. Pure apart from `load_thumbnail` (default: `thumbnail_uri`, which
    reads saved files); pass another loader to build a page without touching the disk."""
    load = load_thumbnail or thumbnail_uri
    ordered = sorted(jobs.items())
    cards = "".join(_card(line, job, load, thumbnail_px) for line, job in ordered)
    title = escape(batch.name or batch.batch_id)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>imageq batch {title}</title><style>{_CSS}{_status_css()}</style></head>"
        f"<body><main>{_header(batch, jobs)}"
        f'<section class="chart"><h2>Timing</h2>{timing_chart(ordered)}{_legend()}</section>'
        f'<section><h2>Contact sheet</h2><div class="grid" style="--thumb:{thumbnail_px}px">'
        f"{cards}</div></section>"
        "<footer>made by imageq · self-contained: no request leaves this page</footer>"
        "</main></body></html>\n"
    )


def write_report(path: Path, html: str) -> Path:
    """Write the page (replacing the file whole, never half-written); return its absolute path."""
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)
    return path


def thumbnail_uri(location: str, size_px: int) -> str | None:
    """A saved image shrunk to fit `size_px` as a PNG `data:` URI; None when it cannot be read
    here (gone, not an image, or kept in a remote store such as s3://)."""
    path = _local_path(location)
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            image.thumbnail((size_px, size_px))
            small = image if image.mode in ("RGB", "RGBA", "L", "LA") else image.convert("RGBA")
            buffer = io.BytesIO()
            small.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def timing_chart(jobs: Iterable[tuple[int, Job]], *, width: int = 1100) -> str:
    """Inline SVG: a bar per job, queue wait (created -> submitted) then generation
    (submitted -> finished), on a time axis in seconds from the first job's creation.
    Unfinished parts run to the chart's end, faded."""
    rows = list(jobs)
    if not rows:
        return '<p class="sub">No job records (they may have expired).</p>'
    start = min(job.created_at for _, job in rows)
    end = max(_last_moment(job) for _, job in rows)
    step_s = tick_step(max(end - start, 1e-3))
    ticks = math.ceil((end - start) / step_s - 1e-9)
    span_s = max(ticks, 1) * step_s
    left, right, top, row_h = 150, 70, 10, 24
    plot_w = width - left - right
    height = top + row_h * len(rows) + 34

    def x(moment: float) -> float:
        return left + (moment - start) / span_s * plot_w

    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="timing per job">']
    axis_y = top + row_h * len(rows) + 4
    for index in range(max(ticks, 1) + 1):
        tick = x(start + index * step_s)
        parts.append(
            f'<line x1="{tick:.1f}" x2="{tick:.1f}" y1="{top}" y2="{axis_y}" stroke="#e5e7eb"/>'
            f'<text x="{tick:.1f}" y="{axis_y + 16}" text-anchor="middle">'
            f"{index * step_s:g} s</text>"
        )
    for row, (line, job) in enumerate(rows):
        y = top + row * row_h + 5
        submitted = job.submitted_at
        finished = job.finished_at
        wait_end = submitted if submitted is not None else (finished or end)
        waiting = submitted is None and finished is None
        bars = [_segment(x(job.created_at), x(wait_end), y, WAIT_COLOUR, waiting)]
        if submitted is not None:
            bars.append(
                _segment(x(submitted), x(finished or end), y, GENERATION_COLOUR, not finished)
            )
        ink = STATUS_COLOURS[job.status].ink
        label = f"#{line} · {job.params.get('aspect_ratio', '')}"
        parts.append(
            f'<g class="bar" data-job="{escape(job.job_id)}"><title>{escape(_tooltip(job))}</title>'
            f'<text x="{left - 10}" y="{y + 10}" text-anchor="end">{escape(label)}</text>'
            f"{''.join(bars)}"
            f'<circle cx="{x(finished or end) + 9:.1f}" cy="{y + 6}" r="4.5" fill="{ink}"/>'
            f'<text x="{x(finished or end) + 18:.1f}" y="{y + 10}">{_seconds(job)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def tick_step(span_s: float, *, target_ticks: int = 8) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most about `target_ticks`."""
    raw = span_s / target_ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw)


def _header(batch: Batch, jobs: dict[int, Job]) -> str:
    chips = "".join(
        f'<li class="chip s-{status}{"" if batch.count(status) else " zero"}">'
        f"<b>{batch.count(status)}</b>{str(status).replace('_', ' ')}</li>"
        for status in JobStatus
    )
    moments = [_last_moment(job) for job in jobs.values()]
    end = batch.completed_at or max(moments, default=batch.created_at)
    state = "complete" if batch.is_complete else "running"
    total = f"{state} · {max(end - batch.created_at, 0):.1f} s total"
    name = f" · batch {escape(batch.batch_id)}" if batch.name else ""
    spent = credits_text(batch.credits_used, budget=batch.max_credits, reached=batch.budget_reached)
    total += f" · {escape(spent)} credits"
    return (
        '<header><div class="eyebrow">imageq batch report</div>'
        f"<h1>{escape(batch.name or batch.batch_id)}</h1>"
        f'<p class="sub">{batch.total} jobs{name} · created {_utc(batch.created_at)} · '
        f"{total}</p>"
        f'<ul class="chips">{chips}</ul></header>'
    )


def _card(line: int, job: Job, load: ThumbnailLoader, size_px: int) -> str:
    params = job.params
    images = "".join(
        _output_view(job, n, output, load, size_px) for n, output in enumerate(job.outputs)
    )
    if not job.outputs:
        images = f'<div class="placeholder">no image · {escape(str(job.status))}</div>'
    facts = [
        params.get("aspect_ratio"),
        params.get("resolution"),
        params.get("quality"),
        *(f"{out['width']}x{out['height']} px" for out in job.outputs[:1]),
        *(f"{key}={value}" for key, value in sorted(params.get("extra", {}).items())),
        f"{job.credits_used:g} credits" if job.credits_used is not None else None,
    ]
    if params.get("reference_images"):
        facts.append(f"{len(params['reference_images'])} reference image(s)")
    chips = "".join(f"<li>{escape(str(fact))}</li>" for fact in facts if fact is not None)
    error = f'<p class="error">{escape(_reason(job))}</p>' if job.error else ""
    prompt = escape(str(params.get("prompt", "")))
    return (
        f'<article class="card" data-job="{escape(job.job_id)}"><div class="thumb">{images}</div>'
        f'<div class="meta"><div class="top"><span class="badge s-{job.status}">'
        f'{str(job.status).replace("_", " ")}</span><span class="secs">{_seconds(job)}</span></div>'
        f'<p class="prompt" title="{prompt}">{prompt}</p><ul class="params">{chips}</ul>{error}'
        f'<div class="id">#{line} · {escape(job.job_id)}</div></div></article>'
    )


def _output_view(job: Job, n: int, output: dict[str, Any], load: ThumbnailLoader, px: int) -> str:
    saved = output.get("saved")
    uri = load(saved["location"], px) if saved else None
    if uri is not None:
        alt = escape(f"output {n} of {job.job_id}")
        return f'<div class="cell"><img src="{uri}" alt="{alt}"></div>'
    url = str(output.get("url", ""))
    link = escape(url)
    if urlsplit(url).scheme in ("http", "https"):
        link = f'<a href="{escape(url)}" rel="noreferrer noopener">{link}</a>'
    if saved:
        why = f"saved at {saved['location']}, not readable here"
    else:
        why = str(output.get("download_error") or "not saved")
    return (
        f'<div class="placeholder"><b>image not embedded</b><span>{escape(why)}</span>{link}</div>'
    )


def _segment(x1: float, x2: float, y: int, colour: str, open_ended: bool) -> str:
    fade = ' opacity=".45" stroke-dasharray="3 2" stroke="#6b7280"' if open_ended else ""
    return (
        f'<rect x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 1.5):.1f}" height="12" rx="3"'
        f' fill="{colour}"{fade}/>'
    )


def _legend() -> str:
    return (
        f'<div class="legend"><span><i class="swatch" style="background:{WAIT_COLOUR}"></i>'
        f'queue wait (created → submitted)</span><span><i class="swatch" style="background:'
        f'{GENERATION_COLOUR}"></i>generation (submitted → finished)</span>'
        "<span>● status at the end · faded: not finished</span></div>"
    )


def _status_css() -> str:
    return "".join(
        f".s-{status}{{color:{colours.ink};background:{colours.tint}}}"
        for status, colours in STATUS_COLOURS.items()
    )


def _tooltip(job: Job) -> str:
    wait = (job.submitted_at or 0) - job.created_at if job.submitted_at else None
    run = job.finished_at - job.submitted_at if job.finished_at and job.submitted_at else None
    parts = [job.job_id, str(job.status)]
    parts += [f"wait {wait:.2f} s"] if wait is not None else []
    parts += [f"generation {run:.2f} s"] if run is not None else []
    return " · ".join(parts)


def _reason(job: Job) -> str:
    error = job.error or {}
    return f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")


def _seconds(job: Job) -> str:
    return f"{job.finished_at - job.created_at:.1f} s" if job.finished_at else "running"


def _last_moment(job: Job) -> float:
    return max(t for t in (job.created_at, job.submitted_at, job.finished_at) if t is not None)


def _local_path(location: str) -> Path | None:
    if "://" not in location:
        return Path(location)
    parts = urlsplit(location)
    return Path(url2pathname(parts.path)) if parts.scheme == "file" else None


def _utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
