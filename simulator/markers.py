"""Fault markers: tokens in a prompt that tell the simulator how to misbehave for that task.

Syntax: ``sim:NAME`` or ``sim:NAME=VALUE`` anywhere in the prompt, separated from other text by
whitespace. Names:

- ``fail`` -- the task finishes as failed; ``unsafe`` -- the submit is refused by safety review;
- ``latency=S`` -- the task finishes S seconds (float) after creation, overriding the config;
- ``retry_after=R`` -- the ``Retry-After`` seconds (int, default 1) sent with marker 429s;
- ``submit429=N``, ``submit503=N``, ``submitdrop=N`` -- faults for the first submits of the
  task's out_task_id; ``poll429=N``, ``poll503=N``, ``polldrop=N``, ``pollgarbage=N`` -- faults
  for the first queries of the task. N defaults to 1. When several are given they are served in
  the order listed here, each taking the next N attempts: ``sim:poll429=1 sim:poll503=2`` gives
  429, 503, 503, then normal answers;
- ``submitdelay=S`` -- the first submit of the task's out_task_id is held S seconds (float)
  before the task is created and answered: an API slow to accept, for killing a client mid-submit;
- ``file404=N`` -- the first N downloads of the task's images answer 404 (N defaults to 1);
- ``filepad=BYTES`` -- its images carry BYTES of padding in a private ancillary chunk (still
  valid PNGs, just large), to exercise download size caps.

Unknown names and bad values raise `MarkerError`, so a typo in a test prompt is a loud 400
instead of a fault that silently never happens.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final


class MarkerError(ValueError):
    """A `sim:` token that is not understood; the message names the token."""


class Fault(enum.Enum):
    """How one request misbehaves."""

    RATE_LIMIT = "429"  # HTTP 429 with Retry-After
    UNAVAILABLE = "503"  # HTTP 503
    DROP = "drop"  # connection closed without any response
    GARBAGE = "garbage"  # HTTP 200 with a body that is not JSON


FaultPlan = tuple[tuple[Fault, int], ...]

_SUBMIT_FAULTS: Final = {"submit429": Fault.RATE_LIMIT, "submit503": Fault.UNAVAILABLE,
                         "submitdrop": Fault.DROP}  # fmt: skip
_POLL_FAULTS: Final = {"poll429": Fault.RATE_LIMIT, "poll503": Fault.UNAVAILABLE,
                       "polldrop": Fault.DROP, "pollgarbage": Fault.GARBAGE}  # fmt: skip
_FLAGS: Final = ("fail", "unsafe")
_TOKEN: Final = re.compile(r"(?<!\S)sim:(\w+)(?:=(\S*))?")


@dataclass(frozen=True)
class Markers:
    """What a prompt asks of the simulator; the default is a well-behaved task."""

    fail: bool = False
    unsafe: bool = False
    latency_s: float | None = None
    retry_after_s: int = 1
    submit_faults: FaultPlan = ()
    poll_faults: FaultPlan = ()
    file_404s: int = 0
    file_pad_bytes: int = 0
    submit_delay_s: float = 0.0


def parse_markers(prompt: str) -> Markers:
    """Read every `sim:` token of a prompt; raise MarkerError on an unknown or malformed one."""
    flags: set[str] = set()
    counts: dict[str, int] = {}
    latency_s: float | None = None
    submit_delay_s = 0.0
    retry_after_s = 1
    for match in _TOKEN.finditer(prompt):
        name, value = match.group(1).lower(), match.group(2)
        token = match.group(0)
        if name in _FLAGS:
            if value is not None:
                raise MarkerError(f"marker {token!r} takes no value")
            flags.add(name)
        elif name == "latency":
            latency_s = _non_negative(token, value, float)
        elif name == "submitdelay":
            submit_delay_s = _non_negative(token, value, float)
        elif name == "retry_after":
            retry_after_s = int(_non_negative(token, value, int))
        elif name == "file404":
            counts[name] = 1 if value is None else int(_non_negative(token, value, int))
        elif name == "filepad":
            counts[name] = int(_non_negative(token, value, int))
        elif name in _SUBMIT_FAULTS or name in _POLL_FAULTS:
            counts[name] = 1 if value is None else int(_non_negative(token, value, int))
        else:
            raise MarkerError(f"unknown marker {token!r}")
    return Markers(
        fail="fail" in flags,
        unsafe="unsafe" in flags,
        latency_s=latency_s,
        retry_after_s=retry_after_s,
        submit_faults=_plan(_SUBMIT_FAULTS, counts),
        poll_faults=_plan(_POLL_FAULTS, counts),
        file_404s=counts.get("file404", 0),
        file_pad_bytes=counts.get("filepad", 0),
        submit_delay_s=submit_delay_s,
    )


def fault_for_attempt(plan: Sequence[tuple[Fault, int]], attempt: int) -> Fault | None:
    """The fault for the `attempt`-th request (1-based), or None once the plan is used up."""
    served = 0
    for fault, count in plan:
        served += count
        if attempt <= served:
            return fault
    return None


def _plan(names: dict[str, Fault], counts: dict[str, int]) -> FaultPlan:
    return tuple((fault, counts[name]) for name, fault in names.items() if counts.get(name))


def _non_negative(token: str, value: str | None, kind: type[float] | type[int]) -> float:
    try:
        number = kind(value) if value else None
    except ValueError:
        number = None
    if number is None or not 0 <= number < float("inf"):
        raise MarkerError(f"marker {token!r} needs a non-negative {kind.__name__} value")
    return number
