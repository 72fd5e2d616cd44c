"""The webhook retry decision: pure, checked at each branch."""

from __future__ import annotations

import pytest

from imageq.config import DEFAULT_WEBHOOK_SCHEDULE_S
from imageq.worker.policy.delivery_schedule import Delivered, GiveUp, RetryIn, next_delivery

SCHEDULE = DEFAULT_WEBHOOK_SCHEDULE_S


def decide(**kwargs: object) -> object:
    call: dict[str, object] = {
        "attempts_made": 1,
        "http_status": 500,
        "error": None,
        "retry_after_s": None,
        "schedule_s": SCHEDULE,
        "jitter": 0.1,
        "rand": lambda: 0.5,
    }
    call.update(kwargs)
    return next_delivery(**call)  # type: ignore[arg-type]  # built from a dict on purpose


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_delivers(status: int) -> None:
    """Any 2xx is success."""
    assert decide(http_status=status) == Delivered()


@pytest.mark.parametrize("status", [301, 302, 400, 404, 429, 500, 503, None])
def test_everything_else_is_retried_on_schedule(status: int | None) -> None:
    """Redirects, 4xx, 5xx and no answer retry after the scheduled delay."""
    assert decide(http_status=status, error="ConnectTimeout") == RetryIn(5.0)
    assert decide(http_status=status, attempts_made=2) == RetryIn(300.0)


def test_schedule_reaches_about_a_day() -> None:
    """The default schedule spans about a day in 8 attempts, like Svix's."""
    assert len(SCHEDULE) == 8
    assert 24 * 3600 <= sum(SCHEDULE) <= 30 * 3600


def test_jitter_spreads_within_bounds() -> None:
    """Jitter moves the delay by at most its fraction either way."""
    assert decide(attempts_made=2, rand=lambda: 0.0) == RetryIn(270.0)
    low = decide(attempts_made=2, rand=lambda: 0.999999)
    assert isinstance(low, RetryIn)
    assert low.delay_s == pytest.approx(330.0, rel=1e-5)


def test_retry_after_is_honoured() -> None:
    """A receiver's Retry-After pushes the next attempt out, never in."""
    assert decide(http_status=429, retry_after_s=60.0) == RetryIn(60.0)
    assert decide(http_status=429, retry_after_s=1.0, attempts_made=2) == RetryIn(300.0)


def test_410_stops_at_once() -> None:
    """410 Gone gives up on the first attempt."""
    result = decide(http_status=410)
    assert isinstance(result, GiveUp)
    assert "410" in result.reason


def test_schedule_exhausted_gives_up_with_the_last_answer() -> None:
    """After the last scheduled attempt the delivery is dead, saying what it last got."""
    result = decide(attempts_made=len(SCHEDULE), http_status=503)
    assert isinstance(result, GiveUp)
    assert "HTTP 503" in result.reason
    assert f"{len(SCHEDULE)} attempts" in result.reason


def test_final_errors_give_up() -> None:
    """An error marked final (an unsafe target) is not retried."""
    result = decide(http_status=None, error="unsafe target", final_error=True)
    assert isinstance(result, GiveUp)
    assert "unsafe target" in result.reason
