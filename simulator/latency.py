"""Delay distributions: parsing of spec strings and sampling of one duration in seconds.

Spec strings (used by `SimConfig.latency` and `SimConfig.request_delay`):

- ``fixed:SECONDS`` -- always that many seconds;
- ``uniform:LOW,HIGH`` -- uniform between LOW and HIGH seconds;
- ``realistic`` -- log-normal around a median that depends on quality and resolution, clipped to
  [5, 130] s. Medians (seconds), chosen so that high quality at 4K sits near the 130 s the
  API documentation gives as the worst case:

  ======== ==== ==== =====
  quality   1K   2K   4K
  ======== ==== ==== =====
  low        15   20    30
  medium     25   35    50
  high       40   60   100
  ======== ==== ==== =====

  ``auto`` is treated as ``medium``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final, Literal

REALISTIC_MEDIANS_S: Final[dict[str, dict[str, float]]] = {
    "low": {"1K": 15.0, "2K": 20.0, "4K": 30.0},
    "medium": {"1K": 25.0, "2K": 35.0, "4K": 50.0},
    "high": {"1K": 40.0, "2K": 60.0, "4K": 100.0},
}
REALISTIC_CLIP_S: Final = (5.0, 130.0)
# Spread of the log-normal: about two thirds of tasks land within x0.7..x1.35 of the median.
REALISTIC_SIGMA: Final = 0.3

Kind = Literal["fixed", "uniform", "realistic"]


@dataclass(frozen=True)
class Distribution:
    """A parsed spec; `low`/`high` are seconds (equal for `fixed`, unused for `realistic`)."""

    kind: Kind
    low_s: float = 0.0
    high_s: float = 0.0

    def sample(self, rng: random.Random, *, quality: str = "high", resolution: str = "1K") -> float:
        """Draw one duration in seconds; quality and resolution matter only for `realistic`."""
        if self.kind == "fixed":
            return self.low_s
        if self.kind == "uniform":
            return rng.uniform(self.low_s, self.high_s)
        by_resolution = REALISTIC_MEDIANS_S.get(quality, REALISTIC_MEDIANS_S["medium"])
        median_s = by_resolution.get(resolution, by_resolution["1K"])
        drawn_s = rng.lognormvariate(math.log(median_s), REALISTIC_SIGMA)
        low_s, high_s = REALISTIC_CLIP_S
        return min(max(drawn_s, low_s), high_s)


def parse_distribution(spec: str, *, allow_realistic: bool = True) -> Distribution:
    """Parse a spec string; raise ValueError naming the spec if it is malformed or negative."""
    kind, _, args = spec.strip().partition(":")
    try:
        if kind == "realistic" and not args and allow_realistic:
            return Distribution("realistic")
        if kind == "fixed":
            value_s = _seconds(args)
            return Distribution("fixed", value_s, value_s)
        if kind == "uniform":
            low_text, high_text = args.split(",")
            low_s, high_s = _seconds(low_text), _seconds(high_text)
            if low_s <= high_s:
                return Distribution("uniform", low_s, high_s)
    except ValueError:
        pass
    allowed = "fixed:S, uniform:LOW,HIGH" + (" or realistic" if allow_realistic else "")
    raise ValueError(f"invalid delay spec {spec!r}: expected {allowed}")


def _seconds(text: str) -> float:
    value_s = float(text)
    if not math.isfinite(value_s) or value_s < 0:
        raise ValueError(text)
    return value_s
