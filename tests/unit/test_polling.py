"""The next-step decision and the backoff: pure functions, checked at their edges."""

from __future__ import annotations

import pytest

from imageq.config import PollingSettings, RetrySettings
from imageq.worker.domain.status import JobStatus, RemoteStatus
from imageq.worker.errors import ApiRejected, ApiUnavailable, RateLimited
from imageq.worker.policy.backoff import backoff_delay_s
from imageq.worker.policy.polling import (
    Finish,
    PollAgain,
    first_poll_delay_s,
    next_step,
)
from imageq.worker.upstream.responses import RemoteTask

TIMING = PollingSettings(first_delay_s=15, interval_s=4, jitter_s=1, deadline_s=180)


def remote(status: RemoteStatus, *urls: str, error: str | None = None) -> RemoteTask:
    return RemoteTask(
        task_id="t", status=status, status_word=str(status), output_urls=urls, error=error
    )


def step(**kwargs: object) -> object:
    call: dict[str, object] = {
        "remote": None,
        "error": None,
        "now": 100.0,
        "deadline": 280.0,
        "timing": TIMING,
        "rand": lambda: 0.5,
    }
    call.update(kwargs)
    return next_step(**call)  # type: ignore[arg-type]  # built from a dict on purpose


@pytest.mark.parametrize(("rand", "delay"), [(0.0, 14.0), (0.5, 15.0), (0.999999, 16.0)])
def test_first_poll_delay_with_jitter(rand: float, delay: float) -> None:
    """The first poll comes 15 s +/- 1 s after submit."""
    assert first_poll_delay_s(TIMING, lambda: rand) == pytest.approx(delay, abs=1e-4)


def test_success_finishes_with_outputs() -> None:
    """A succeeded remote task ends the job with its URLs."""
    assert step(remote=remote(RemoteStatus.SUCCEEDED, "https://a/1.png")) == Finish(
        JobStatus.SUCCEEDED, output_urls=("https://a/1.png",)
    )


def test_success_without_outputs_fails() -> None:
    """A success with no URL at all is reported as a failure, not a silent empty result."""
    result = step(remote=remote(RemoteStatus.SUCCEEDED))
    assert isinstance(result, Finish)
    assert result.status is JobStatus.FAILED


@pytest.mark.parametrize(
    "status", [RemoteStatus.FAILED, RemoteStatus.CANCELLED, RemoteStatus.TIMED_OUT]
)
def test_remote_end_without_output_fails(status: RemoteStatus) -> None:
    """Failed, cancelled or timed out remotely: the job fails with the remote reason."""
    result = step(remote=remote(status, error="boom"))
    assert isinstance(result, Finish)
    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error["message"] == "boom"


@pytest.mark.parametrize(
    "status", [RemoteStatus.PENDING, RemoteStatus.RUNNING, RemoteStatus.UNKNOWN]
)
def test_unfinished_polls_again_in_interval(status: RemoteStatus) -> None:
    """Still running: poll again after interval +/- jitter."""
    assert step(remote=remote(status), rand=lambda: 0.0) == PollAgain(3.0)
    assert step(remote=remote(status), rand=lambda: 0.5) == PollAgain(4.0)


def test_last_poll_lands_on_the_deadline() -> None:
    """Near the deadline the next poll is moved to the deadline itself: one final check."""
    assert step(remote=remote(RemoteStatus.RUNNING), now=278.5) == PollAgain(1.5)


@pytest.mark.parametrize("now", [280.0, 280.001, 400.0])
def test_deadline_edge_times_out(now: float) -> None:
    """At or past the deadline an unfinished job times out."""
    result = step(remote=remote(RemoteStatus.RUNNING), now=now)
    assert isinstance(result, Finish)
    assert result.status is JobStatus.TIMED_OUT


def test_finished_at_the_deadline_still_succeeds() -> None:
    """The final check at the deadline still counts a finished task."""
    result = step(remote=remote(RemoteStatus.SUCCEEDED, "https://a/1.png"), now=280.0)
    assert isinstance(result, Finish)
    assert result.status is JobStatus.SUCCEEDED


def test_retryable_error_polls_again_and_respects_retry_after() -> None:
    """A transient poll error is not the end; Retry-After stretches the wait."""
    assert step(error=ApiUnavailable("503")) == PollAgain(4.0)
    assert step(error=RateLimited("429", retry_after_s=9.0)) == PollAgain(9.0)
    assert step(error=RateLimited("429", retry_after_s=900.0)) == PollAgain(40.0)  # 10 intervals


def test_final_error_fails_the_job() -> None:
    """A final poll error fails the job with the error's record."""
    result = step(error=ApiRejected("gone", http_status=410))
    assert isinstance(result, Finish)
    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert result.error["http_status"] == 410


def test_transient_error_past_deadline_times_out() -> None:
    """Errors cannot stretch the deadline."""
    result = step(error=ApiUnavailable("503"), now=281.0)
    assert isinstance(result, Finish)
    assert result.status is JobStatus.TIMED_OUT


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (10, 15.0, 30.0)]
)
def test_backoff_is_capped_exponential_with_jitter(attempt: int, low: float, high: float) -> None:
    """Delays double per attempt up to the cap, jittered within the upper half."""
    retry = RetrySettings(base_delay_s=1, max_delay_s=30)
    assert backoff_delay_s(attempt, retry, lambda: 0.0) == pytest.approx(low)
    assert backoff_delay_s(attempt, retry, lambda: 0.999999) == pytest.approx(high, rel=1e-5)
