"""How long a worker holds a piece of work before the sweeper may take it back, and so how
soon a job whose worker was lost resumes: pure functions of the settings.

Each job's next piece of work is due at a time the in-flight index holds, and a worker doing it
holds a lease on it. The sweeper (every `sweep.interval_s`) takes back work more than
`sweep.grace_s` overdue whose lease has ended. A lease is the grace, so a lost job resumes
within grace + interval, unless a second worker starting the same work while the first still
waits for an answer would cost something the step cannot undo: then the lease covers one
request. A submit is the special case: its lease is the grace, and the request window
(`submit_send_s`) keeps a second submit from going out while the first may still land; the
attempt that takes over in between only looks the job up.
"""

from __future__ import annotations

from typing import Final, Literal

from imageq.config import ApiSettings, Settings

Step = Literal["submit", "poll", "download", "callback", "webhook"]
STEPS: Final[tuple[Step, ...]] = ("submit", "poll", "download", "callback", "webhook")

# Between a request's timeouts running out and the worker's write: the time that write takes.
MARGIN_S: Final = 1.0


def lease_s(settings: Settings, step: Step) -> float:
    """How long a worker holds `step`'s work before the sweeper may hand it to another."""
    grace_s = settings.sweep.grace_s
    if step == "webhook":
        # A second attempt sent while the first waits for its answer is a second delivery.
        return max(grace_s, settings.webhook.timeout_s + MARGIN_S)
    # A second submit is held back by `submit_send_s`; a second poll is refused by its token;
    # a second download of the same output writes the same file, the first to finish is kept;
    # a callback is published in milliseconds.
    return grace_s


def resume_bound_s(settings: Settings, step: Step) -> float:
    """The longest a job waits, after its worker is lost mid-`step`, before another worker takes
    the step up: the lease, then at most one sweep interval."""
    return lease_s(settings, step) + settings.sweep.interval_s


def submit_send_s(api: ApiSettings) -> float:
    """How long after a submit request goes out the API may still act on it: one request's
    timeouts and a margin. No other submit of the job goes out before then."""
    return api.connect_timeout_s + api.read_timeout_s + MARGIN_S
