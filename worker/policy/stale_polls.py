"""Whether a poll message may be stale, so the poll checks its token before it asks the API.

A poll that goes on is one compare-and-set on the job's status and poll token, so a stale or
repeated message never moves a job; the question here is only whether it may cost an API
request first. In countdown mode each token's message is published once, by the write that
handed the token on, so a second message with a token comes only from:

- the broker handing a message out again (a worker lost, or stopped, while it held it): kombu
  marks it `redelivered`;
- Celery retrying the task (a lost connection to Redis): `retries` > 0;
- the sweeper, which re-sends a poll only once it is `sweep.grace_s` overdue, and without the
  job's facts (that poll reads the record): the original message, if it turns up after all,
  runs late.

A message with none of these marks, run before its due time plus half the grace (the other
half allows for clocks apart between hosts), holds its job's current token unless the job was
ended meanwhile by something other than a poll (a cancel, the sweeper's time-out): such a
poll asks the API once more, when it would have anyway, and its write then changes nothing.
"""

from __future__ import annotations


def may_be_stale(
    *, redelivered: bool, retries: int, due_at: float | None, now: float, grace_s: float
) -> bool:
    """True unless the message is its token's first delivery and first try, run on time
    (`due_at`: when it was published to run, None if unknown)."""
    if redelivered or retries > 0 or due_at is None:
        return True
    return now >= due_at + grace_s / 2
