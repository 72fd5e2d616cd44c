"""Waiting out an API outage, and taking back a lost worker's work: the pure decisions (the
submit window, the last check past the deadline, the leases and the resume bound per step)."""

from __future__ import annotations

import pytest

from imageq.config import ApiSettings, PollingSettings, RetrySettings, Settings
from imageq.worker.domain.status import JobStatus, RemoteStatus
from imageq.worker.errors import (
    ApiError,
    ApiRejected,
    ApiUnavailable,
    ApiUnreachable,
    RateLimited,
)
from imageq.worker.policy.leases import STEPS, lease_s, resume_bound_s, submit_send_s
from imageq.worker.policy.polling import Finish, PollAgain, next_step
from imageq.worker.policy.submit_retry import may_have_reached_api, submit_retry_delay_s
from imageq.worker.upstream.responses import RemoteTask

RETRY = RetrySettings(base_delay_s=1, max_delay_s=30, outage_window_s=600)
TIMING = PollingSettings(first_delay_s=15, interval_s=4, jitter_s=1, deadline_s=180)
DOWN = ApiUnreachable("POST /api/openapi/submit: could not connect")


def retry_delay(error: ApiError, *, attempt: int = 1, since_first_s: float = 0.0) -> float | None:
    return submit_retry_delay_s(
        error,
        attempt=attempt,
        first_attempt_at=1000.0,
        now=1000.0 + since_first_s,
        retry=RETRY,
        max_countdown_s=240,
        rand=lambda: 0.999999,
    )


@pytest.mark.parametrize(
    ("since_first_s", "attempt", "delay"),
    [(0, 1, 1.0), (18, 6, 30.0), (599.9, 40, 30.0), (600, 41, None), (900, 50, None)],
)
def test_submit_is_retried_for_the_window_from_the_first_attempt(
    since_first_s: float, attempt: int, delay: float | None
) -> None:
    """A retryable error is retried with capped backoff however many attempts it takes, until
    the window since the first attempt is over; then the job ends."""
    result = retry_delay(DOWN, attempt=attempt, since_first_s=since_first_s)
    assert result == (None if delay is None else pytest.approx(delay, abs=1e-3))


def test_a_final_error_ends_the_job_at_once() -> None:
    """A refusal is not an outage: no retry, whatever is left of the window."""
    assert retry_delay(ApiRejected("bad params", http_status=400)) is None


@pytest.mark.parametrize(("retry_after_s", "delay"), [(45.0, 45.0), (900.0, 240.0)])
def test_retry_after_is_honoured_up_to_one_countdown(retry_after_s: float, delay: float) -> None:
    """Never sooner than Retry-After; never longer than a countdown may be held."""
    error = RateLimited("429", http_status=429, retry_after_s=retry_after_s)
    assert retry_delay(error) == delay


@pytest.mark.parametrize(
    ("error", "reached"),
    [
        (DOWN, False),
        (RateLimited("429", http_status=429), False),
        (ApiUnavailable("POST /api/openapi/submit: timed out (ReadTimeout)"), True),
        (ApiUnavailable("POST /api/openapi/submit: ConnectionError"), True),
        (ApiUnavailable("HTTP 503", http_status=503), True),
        (ApiUnavailable("HTTP 200 with a body that is not JSON", http_status=200), True),
    ],
    ids=["no-connection", "429", "read-timeout", "dropped", "503", "garbage-200"],
)
def test_only_a_request_that_may_have_landed_makes_the_next_attempt_look_up(
    error: ApiError, reached: bool
) -> None:
    """No connection or a 4xx answer created nothing; the rest may hide an accepted submit."""
    assert may_have_reached_api(error) is reached


def poll_after(
    *, now: float, error: ApiError | None = None, status: RemoteStatus | None = None
) -> object:
    remote = None
    if status is not None:
        urls = ("https://a/1.png",) if status is RemoteStatus.SUCCEEDED else ()
        remote = RemoteTask("t", status, str(status), output_urls=urls)
    return next_step(
        remote=remote,
        error=error,
        now=now,
        deadline=1180.0,
        timing=TIMING,
        rand=lambda: 0.5,
        outage_window_s=600,
    )


def test_past_the_deadline_an_unanswered_poll_tries_again() -> None:
    """The deadline passed while the API was away: the last check waits for an answer."""
    assert poll_after(now=1181, error=DOWN) == PollAgain(4.0)
    assert poll_after(now=1778, error=DOWN) == PollAgain(2.0)  # not past the window's end


def test_the_last_check_the_api_answers_decides() -> None:
    """A job that succeeded during the outage is reported as succeeded; one still running at
    the first answer after the deadline times out."""
    done = poll_after(now=1500, status=RemoteStatus.SUCCEEDED)
    assert isinstance(done, Finish)
    assert done.status is JobStatus.SUCCEEDED
    late = poll_after(now=1500, status=RemoteStatus.RUNNING)
    assert isinstance(late, Finish)
    assert late.status is JobStatus.TIMED_OUT


def test_no_answer_for_the_whole_window_times_out_naming_the_error() -> None:
    """Past the window the job ends as timed out, and says the API never answered."""
    late = poll_after(now=1780, error=DOWN)
    assert isinstance(late, Finish)
    assert late.status is JobStatus.TIMED_OUT
    assert late.error is not None
    assert "could not connect" in late.error["message"]


def test_before_the_deadline_an_outage_only_delays_the_next_poll() -> None:
    """Before the deadline a failed poll goes on, at the latest at the deadline."""
    assert poll_after(now=1178, error=DOWN) == PollAgain(2.0)


def settings(**groups: object) -> Settings:
    return Settings(_env_file=None, **groups)  # type: ignore[arg-type]  # groups as dicts


def test_every_step_resumes_within_20_s_by_default() -> None:
    """The default bound per step: grace 15 s + interval 5 s; docs/guarantees.md vows 30 s."""
    defaults = settings()
    assert {step: resume_bound_s(defaults, step) for step in STEPS} == dict.fromkeys(STEPS, 20.0)


def test_a_webhook_lease_covers_its_request() -> None:
    """A webhook attempt is held as long as its request may take, so no second attempt goes
    out while the first waits for its answer; the bound grows with it."""
    slow = settings(webhook={"timeout_s": 25}, sweep={"grace_s": 15, "interval_s": 5})
    assert lease_s(slow, "webhook") == 26.0
    assert resume_bound_s(slow, "webhook") == 31.0
    assert resume_bound_s(slow, "submit") == 20.0


def test_a_submit_request_may_land_for_one_requests_timeouts() -> None:
    """One request's connect and read timeouts and a margin: not two requests."""
    assert submit_send_s(ApiSettings(connect_timeout_s=5, read_timeout_s=30)) == 36.0
