"""The one exception tree of imageq.

Every error imageq raises on purpose is an `ImageqError`. API errors say whether a retry can
help (`retryable`) and carry what the API said; none of them ever holds the API key.
"""

from __future__ import annotations


class ImageqError(Exception):
    """Base of every error imageq raises on purpose."""


class InvalidSettings(ImageqError, ValueError):
    """A setting read from the environment or `.env` is invalid; the message names each
    variable (`IMAGEQ_<GROUP>__<NAME>`) and what is wrong with it."""


class InvalidParams(ImageqError, ValueError):
    """A job's parameters were refused before anything was queued."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JobConflict(InvalidParams):
    """A job id already names a job made from other parameters: refused, nothing stored or sent.

    A job id is an idempotency key: the same request again gets the job it made, a different
    one under the same id is refused. `fields` names the options that differ, never their
    values (a webhook URL or metadata may hold a secret).
    """

    def __init__(self, job_id: str, fields: tuple[str, ...]) -> None:
        super().__init__(
            "job_id",
            f"{job_id!r} is already a job with a different {', '.join(fields)};"
            " an id names one job: give a new id for a different one",
        )
        self.job_id = job_id
        self.fields = fields


class BulkFileError(ImageqError):
    """A bulk file cannot be read as a whole; `offset` is the bad byte's, for encoding errors.

    Faults of single rows are not raised: `parse_bulk` reports them row by row.
    """

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class JobNotFound(ImageqError, LookupError):
    """No job record with this id (never created, or expired by its TTL)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class CorruptRecord(ImageqError, ValueError):
    """A stored record (a job's or a batch's) that cannot be decoded: a field is missing, is not
    JSON, or holds a value of the wrong kind. Names the record and the field, never the value."""

    def __init__(self, record_id: str, field: str, reason: str, *, kind: str = "job") -> None:
        super().__init__(f"{kind} record {record_id!r} is corrupt: {field}: {reason}")
        self.kind = kind
        self.record_id = record_id
        self.field = field
        self.reason = reason


class WriteNotReplicated(ImageqError):
    """A write a failover must not lose reached the master, but fewer replicas than required
    acknowledged it in time (Redis `WAIT`). It may or may not survive a failover: the caller
    repeats what it did: a task is retried as on a lost connection (every step is a
    compare-and-set, so a repeat that finds its write done changes nothing), and a producer
    enqueues again with the same `job_id` (an idempotency key: a known job is not created twice)."""

    def __init__(self, job_id: str, *, acknowledged: int, required: int) -> None:
        super().__init__(
            f"write of job {job_id!r} acknowledged by {acknowledged} of {required} replica(s)"
        )
        self.job_id = job_id
        self.acknowledged = acknowledged
        self.required = required


class WaitTimeout(ImageqError, TimeoutError):
    """A producer waited for a job longer than it allowed."""


class ApiError(ImageqError):
    """The aireiter API answered with an error, or could not be reached.

    `http_status` is None when no HTTP answer arrived; `code` is the body's own code, if any.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, http_status={self.http_status}, "
            f"code={self.code}, retryable={self.retryable})"
        )

    def to_record(self) -> dict[str, object]:
        """The error as plain JSON for the job record and the completion payload."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "http_status": self.http_status,
            "code": self.code,
            "retryable": self.retryable,
        }


class ApiUnavailable(ApiError):
    """Transient: connection error, timeout, 5xx, or a body that is not the documented JSON.

    After a submit fails this way the API may still have created the task: look it up by
    `out_task_id` before submitting again.
    """

    retryable = True


class ApiUnreachable(ApiUnavailable):
    """Transient: no connection to the API could be made (refused, name not resolved, connect
    timed out), so the request was never sent: a submit that failed so created nothing."""


class RateLimited(ApiUnavailable):
    """HTTP 429; `retry_after_s` holds the server's `Retry-After` when it sent one."""


class ApiRejected(ApiError):
    """Final: the API refused the request (4xx, or a non-200 code in an HTTP 200 body)."""


class AuthenticationFailed(ApiRejected):
    """HTTP 401/403: the API key is missing, wrong or lacks access."""


class SafetyRejected(ApiRejected):
    """The platform's safety review refused the prompt."""


class TaskNotFound(ApiRejected):
    """The API has no task with this id (or this `out_task_id`)."""


class DownloadFailed(ImageqError):
    """An output image could not be fetched, verified or stored.

    Never fails the job: the job completes with its URLs and this error recorded.
    """

    def __init__(self, message: str, *, retryable: bool, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.http_status = http_status

    def to_record(self) -> dict[str, object]:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "http_status": self.http_status,
            "retryable": self.retryable,
        }


class UnsafeTarget(ImageqError):
    """A webhook, download or reference-image URL points at an address imageq will not call:
    loopback or a private network not allowed in the settings, or link-local and metadata
    addresses, which are never allowed."""


class WebhookVerificationFailed(ImageqError):
    """A received webhook's signature or timestamp did not check out."""
