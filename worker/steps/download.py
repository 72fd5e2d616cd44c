"""Save a finished job's outputs before their URLs expire; then send the notifications.

A failed download is retried on its own, a few times; when it keeps failing the job still
completes, with its URLs and the download error recorded: a download problem never hides a
generated image from the user.
"""

from __future__ import annotations

from typing import Any

from imageq.worker.domain.job import Downloads, Job
from imageq.worker.errors import DownloadFailed
from imageq.worker.messages import Actions, ScheduleDownload
from imageq.worker.outputs.fetching import DownloadLimits, save_output
from imageq.worker.policy.backoff import backoff_delay_s
from imageq.worker.runtime import Runtime
from imageq.worker.steps.finish import notifications
from imageq.worker.steps.loading import load, log


def download(rt: Runtime, job_id: str, attempt: int) -> Actions:
    job = load(rt, job_id)
    if job is None or job.downloads_state != Downloads.PENDING or rt.storage is None:
        return []
    if job.download_attempts + 1 != attempt:
        return []
    now = rt.clock()
    if job.download_lease_until > now:
        return []  # another worker is on this very attempt
    settings = rt.settings.storage
    lease_s = len(job.outputs) * (settings.total_timeout_s + settings.connect_timeout_s) + 10
    expect: dict[str, Any] = {
        "downloads_state": Downloads.PENDING,
        "download_attempts": job.download_attempts,
        "download_lease_until": job.download_lease_until,
    }
    claim = {"download_lease_until": now + lease_s}
    if not rt.store.update(job_id, expect=expect, changes=claim, due_at=now + lease_s):
        return []
    outputs = _save_all(rt, job)
    retry = attempt < settings.max_attempts and any(
        (output.get("download_error") or {}).get("retryable") for output in outputs
    )
    changes: dict[str, Any] = {
        "outputs": outputs,
        "download_attempts": attempt,
        "download_lease_until": 0.0,
    }
    delay = backoff_delay_s(attempt, rt.settings.retry, rt.rand)
    index: dict[str, Any] = {"due_at": rt.clock() + (delay if retry else 0.0)}
    if not retry:
        changes["downloads_state"] = Downloads.DONE
        if not notifications(job):
            index = {"settled": True}
    expect["download_lease_until"] = now + lease_s
    if not rt.store.update(job_id, expect=expect, changes=changes, **index):
        return []
    if retry:
        return [ScheduleDownload(job_id, attempt + 1, delay)]
    return notifications(job)


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
    for index, output in enumerate(outputs):
        if output.get("saved"):
            continue
        try:
            saved = save_output(
                rt.storage,
                rt.sessions.get(),
                url=output["url"],
                job_id=job.job_id,
                index=index,
                finished_at=job.finished_at,
                expected_size=(output["width"], output["height"]),
                limits=limits,
            )
        except DownloadFailed as error:
            log.info("download %d of job %s failed: %s", index, job.job_id, error.message)
            output["download_error"] = error.to_record()
        else:
            output.update(saved=saved.to_record(), download_error=None)
    return outputs
