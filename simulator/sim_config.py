"""`SimConfig`: every knob of the simulator, validated once at construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from imageq.simulator.credits import MADE_UP_CREDITS
from imageq.simulator.latency import Distribution, parse_distribution

Envelope = Literal["gpt_image_2_official", "platform"]
StatusWordsMode = Literal["canonical", "varied"]


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Settings of one simulator instance; invalid values raise ValueError when built.

    `latency` and `request_delay` are spec strings (see `imageq.simulator.latency`). Fault rates are
    probabilities per request: 429 and 503 hit submits and queries, drops hit queries only
    (a random ambiguous submit would make load tests measure the wrong thing).
    `rate_limit_per_s` (0: none) answers an API key's requests past that many in any second
    with 429 and `Retry-After`.
    """

    api_key: str
    host: str = "127.0.0.1"
    port: int = 0
    latency: str = "realistic"
    request_delay: str = "fixed:0"
    envelope: Envelope = "gpt_image_2_official"
    v1_tasks: bool = True
    status_words: StatusWordsMode = "canonical"
    images_per_task: int = 1
    fault_rate_429: float = 0.0
    fault_rate_503: float = 0.0
    fault_rate_drop: float = 0.0
    seed: int | None = None
    # The query answer always reports `credits_used`; GET /v1/tasks/{id} (whose shape the API
    # does not document) only with this on, so a client's "the poll lacks it" path is testable.
    credits_in_v1_tasks: bool = False
    credits: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MADE_UP_CREDITS)
    rate_limit_per_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        self.latency_distribution()
        self.request_delay_distribution()
        if self.envelope not in ("gpt_image_2_official", "platform"):
            raise ValueError(f"unknown envelope {self.envelope!r}")
        if self.status_words not in ("canonical", "varied"):
            raise ValueError(f"unknown status_words {self.status_words!r}")
        if self.images_per_task < 1:
            raise ValueError(f"images_per_task must be >= 1, got {self.images_per_task}")
        if self.rate_limit_per_s < 0:
            raise ValueError(f"rate_limit_per_s must be >= 0, got {self.rate_limit_per_s}")
        for name in ("fault_rate_429", "fault_rate_503", "fault_rate_drop"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")

    def latency_distribution(self) -> Distribution:
        """The parsed completion latency (time from submit to a finished task)."""
        return parse_distribution(self.latency)

    def request_delay_distribution(self) -> Distribution:
        """The parsed delay before every API answer; `realistic` has no meaning here."""
        return parse_distribution(self.request_delay, allow_realistic=False)

    def summary(self) -> str:
        """For the start-up line: the latency, then only what differs from the defaults
        (never the key, nor the address, which the "listening on" line gives)."""
        defaults = SimConfig(api_key="-")
        changed = [
            f"{name.replace('_', ' ')} {value}"
            for name, value in vars(self).items()
            if name not in ("api_key", "host", "port", "latency", "credits")
            and value != getattr(defaults, name)
        ]
        return ", ".join([f"latency {self.latency}", *changed])

    def __repr__(self) -> str:
        # The dataclass repr would print the API key into logs and tracebacks.
        shown = {k: v for k, v in vars(self).items() if k != "api_key"}
        return f"SimConfig(api_key='***', {', '.join(f'{k}={v!r}' for k, v in shown.items())})"
