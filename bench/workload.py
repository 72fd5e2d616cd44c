"""The jobs of one round: a fixed mix of quality and resolution, and each job's completion time.

Completion times are drawn here, from the simulator's own distributions
(`imageq.simulator.latency`), and sent to the simulator as a `sim:latency=S` marker in each
prompt. So both designs of a round get the very same job list (a paired comparison), and times can
be scaled to fit a time budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from imageq.simulator.latency import Distribution, parse_distribution

QUALITIES: Final = ("low", "medium", "high")
RESOLUTIONS: Final = ("1K", "2K", "4K")
# Ratios the model accepts at every resolution, 4K included.
RATIOS: Final = ("16:9", "9:16", "2:1", "21:9")


@dataclass(frozen=True)
class JobSpec:
    """One job to submit, with the completion time the simulator will give it."""

    job_id: str
    prompt: str
    aspect_ratio: str
    resolution: str
    quality: str
    latency_s: float

    def params(self) -> dict[str, str]:
        """The generation parameters, as both designs send them."""
        return {
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "quality": self.quality,
        }


def make_jobs(n: int, *, seed: int, latency: str, scale: float) -> list[JobSpec]:
    """`n` jobs spread evenly over the nine quality x resolution cells, each with a completion
    time drawn from `latency` (a simulator spec such as `realistic`) and multiplied by `scale`."""
    distribution: Distribution = parse_distribution(latency)
    rng = random.Random(seed)
    jobs = []
    for index in range(n):
        quality = QUALITIES[index % len(QUALITIES)]
        resolution = RESOLUTIONS[(index // len(QUALITIES)) % len(RESOLUTIONS)]
        latency_s = scale * distribution.sample(rng, quality=quality, resolution=resolution)
        jobs.append(
            JobSpec(
                job_id=f"bench-{index:05d}",
                prompt=f"benchmark image {index} sim:latency={latency_s:.3f}",
                aspect_ratio=rng.choice(RATIOS),
                resolution=resolution,
                quality=quality,
                latency_s=round(latency_s, 3),
            )
        )
    return jobs


def make_history(
    window: int, *, seed: int, latency: str, scale: float
) -> dict[tuple[str, str], list[float]]:
    """`window` earlier completion times per quality x resolution cell, drawn like the jobs'
    (another seed): what a worker that has been running for a while has seen, to start the
    adaptive first poll warm."""
    distribution = parse_distribution(latency)
    rng = random.Random(f"history-{seed}")
    return {
        (quality, resolution): [
            scale * distribution.sample(rng, quality=quality, resolution=resolution)
            for _ in range(window)
        ]
        for quality in QUALITIES
        for resolution in RESOLUTIONS
    }
