"""Save a finished job's outputs before their URLs expire; then send the notifications.

A failed download is retried on its own, a few times; when it keeps failing the job still
completes, with its URLs and the download error recorded: a download problem never hides a
generated image from the user.
"""

from __future__ import annotations

from typing import Any

from imageq.worker.domain import deliveries
from imageq.worker.domain.job import Job
from imageq.worker.errors import DownloadFailed
from imageq.worker.logs import lifecycle
from imageq.worker.messages import Actions
from imageq.worker.metrics import DOWNLOADS, download_outcome
from imageq.worker.outputs.fetching import DownloadLimits, save_output
from imageq.worker.policy.backoff import backoff_delay_s
from imageq.worker.policy.leases import lease_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.loading import load, log


def download(rt: Runtime, job_id: str, attempt: int) -> Actions:
    job = load(rt, job_id)
    if job is None or rt.storage is None:
        return []
    settings = rt.settings.storage
    lease = lease_s(rt.settings, "download")
    claim = deliveries.claim_download(job, attempt=attempt, now=rt.clock(), lease_s=lease)
    if claim is None or not rt.store.apply(claim):
        return []
    outputs = _save_all(rt, job)
    assert job.finished_at is not None
    marked = deliveries.mark_download(
        claim.applied_to(job),
        outputs=outputs,
        max_attempts=settings.max_attempts,
        now=rt.clock(),
        delay_s=backoff_delay_s(attempt, rt.settings.retry, rt.rand),
        retry_until=job.finished_at + rt.settings.retry.outage_window_s,
    )
    if marked is None or not rt.store.apply(marked):
        return []
    return marked.follow_ups()


def _save_all(rt: Runtime, job: Job) -> list[dict[str, Any]]:
    assert rt.storage is not None
    assert job.finished_at is not None
    settings = rt.settings.storage
    limits = DownloadLimits(
        max_bytes=settings.max_bytes,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        total_timeout_s=settings.total_timeout_s,
    )
    outputs = [dict(output) for output in job.outputs]
    ids = {"job_id": job.job_id, "batch_id": job.batch_id}
    for index, output in enumerate(outputs):
        if output.get("saved"):
            continue
        try:
            saved = save_output(
                rt.storage,
                rt.outbound,
                url=output["url"],
                job_id=job.job_id,
                index=index,
                finished_at=job.finished_at,
                expected_size=(output["width"], output["height"]),
                limits=limits,
            )
        except DownloadFailed as error:
            fields = lifecycle("job.download_failed", **ids, index=index, reason=error.message)
            log.info(
                "download %d of job %s failed: %s", index, job.job_id, error.message, extra=fields
            )
            output["download_error"] = error.to_record()
            DOWNLOADS.labels(download_outcome(error)).inc()
        else:
            fields = lifecycle("job.downloaded", **ids, index=index, location=saved.location)
            log.info("download %d of job %s saved", index, job.job_id, extra=fields)
            output.update(saved=saved.to_record(), download_error=None)
            DOWNLOADS.labels(download_outcome(None)).inc()
    return outputs
