"""Task phases and the status words the simulator reports for them."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Final


class Phase(enum.Enum):
    """Where a simulated task is in its life."""

    SUBMITTED = "submitted"  # accepted, not started
    PROCESSING = "processing"  # started; begins after PROCESSING_AT of the latency
    COMPLETED = "completed"  # finished with output
    FAILED = "failed"  # finished without output (prompt marker `sim:fail`)


FINISHED: Final = frozenset({Phase.COMPLETED, Phase.FAILED})

# A task shows `processing` once this fraction of its latency has passed.
PROCESSING_AT: Final = 0.2

# Synonyms seen across the platform and its peers (see the API notes), per phase.
SYNONYMS: Final[dict[Phase, tuple[str, ...]]] = {
    Phase.SUBMITTED: ("submitted", "pending", "queued"),
    Phase.PROCESSING: ("processing", "running", "in_progress"),
    Phase.COMPLETED: ("completed", "succeeded", "success"),
    Phase.FAILED: ("failed", "fail", "error"),
}


@dataclass(frozen=True)
class StatusWords:
    """The word a task reports for each phase; fixed per task so a task never flips synonyms."""

    words: tuple[tuple[Phase, str], ...]

    def word(self, phase: Phase) -> str:
        """The status string for a phase."""
        return dict(self.words)[phase]


CANONICAL: Final = StatusWords(tuple((phase, phase.value) for phase in Phase))


def choose_words(rng: random.Random, *, varied: bool) -> StatusWords:
    """Canonical words, or one random synonym per phase when `varied`."""
    if not varied:
        return CANONICAL
    return StatusWords(tuple((phase, rng.choice(SYNONYMS[phase])) for phase in Phase))


def phase_at(elapsed_s: float, latency_s: float, *, fails: bool) -> Phase:
    """The phase of a task `elapsed_s` seconds after creation."""
    if elapsed_s >= latency_s:
        return Phase.FAILED if fails else Phase.COMPLETED
    if elapsed_s >= PROCESSING_AT * latency_s:
        return Phase.PROCESSING
    return Phase.SUBMITTED
