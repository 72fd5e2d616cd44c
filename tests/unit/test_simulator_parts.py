"""The API simulator's parts that need no server: its config, latency distributions, prompt
markers and fault plans.
"""

from __future__ import annotations

import importlib
import random
import statistics
import sys
from typing import Any

import pytest

from imageq.simulator.latency import REALISTIC_CLIP_S, parse_distribution
from imageq.simulator.markers import Fault, MarkerError, fault_for_attempt, parse_markers
from imageq.simulator.sim_config import SimConfig

KEY = "sk-test-simulator"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"latency": "gaussian"}, "gaussian"),
        ({"request_delay": "realistic"}, "realistic"),
        ({"fault_rate_429": 2.0}, "fault_rate_429"),
        ({"images_per_task": 0}, "images_per_task"),
    ],
)
def test_config_rejects_bad_values(bad: dict[str, Any], message: str) -> None:
    """Bad specs, rates or counts fail at construction, naming the value."""
    with pytest.raises(ValueError, match=message):
        SimConfig(api_key=KEY, **bad)


def test_config_repr_hides_the_key() -> None:
    """The repr, which ends up in logs, masks the API key."""
    assert KEY not in repr(SimConfig(api_key=KEY))


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [("fixed:2.5", 2.5, 2.5), ("uniform:1,3", 1.0, 3.0), ("realistic", *REALISTIC_CLIP_S)],
)
def test_distributions_sample_within_bounds(spec: str, low: float, high: float) -> None:
    """Samples stay within the spec's bounds (realistic: the clip range)."""
    rng, distribution = random.Random(0), parse_distribution(spec)
    for quality in ("low", "high"):
        for resolution in ("1K", "4K"):
            drawn_s = distribution.sample(rng, quality=quality, resolution=resolution)
            assert low <= drawn_s <= high


def test_realistic_medians_grow_with_quality_and_resolution() -> None:
    """high/4K takes far longer than low/1K under the realistic distribution."""
    rng, distribution = random.Random(0), parse_distribution("realistic")
    fast = statistics.median(distribution.sample(rng, quality="low") for _ in range(300))
    slow = statistics.median(
        distribution.sample(rng, quality="high", resolution="4K") for _ in range(300)
    )
    assert 12 < fast < 18
    assert 85 < slow < 115


@pytest.mark.parametrize("spec", ["fixed:-1", "uniform:3,1", "uniform:1", "fixed:nan", ""])
def test_bad_distribution_specs_are_rejected(spec: str) -> None:
    """Malformed or negative specs raise ValueError."""
    with pytest.raises(ValueError, match="invalid delay spec"):
        parse_distribution(spec)


def test_markers_parse_anywhere_in_the_prompt() -> None:
    """Flags, values and fault counts are read wherever they sit; N defaults to 1."""
    markers = parse_markers("sim:fail a fox sim:latency=0.3 at dusk sim:poll503 sim:submit429=2")
    assert markers.fail
    assert not markers.unsafe
    assert markers.latency_s == 0.3
    assert markers.poll_faults == ((Fault.UNAVAILABLE, 1),)
    assert markers.submit_faults == ((Fault.RATE_LIMIT, 2),)
    assert parse_markers("a fox sim:submitdelay=2.5").submit_delay_s == 2.5
    assert parse_markers("no markers, not even xsim:fail") == parse_markers("")


@pytest.mark.parametrize(
    "prompt", ["sim:nope", "sim:fail=1", "sim:poll429=-1", "sim:latency=", "sim:submitdelay=x"]
)
def test_bad_markers_raise(prompt: str) -> None:
    """Unknown names and bad values are errors, not silently ignored."""
    with pytest.raises(MarkerError, match="sim:"):
        parse_markers(prompt)


def test_fault_plan_serves_attempts_in_order() -> None:
    """Each fault takes the next N attempts; afterwards there is none."""
    plan = ((Fault.RATE_LIMIT, 1), (Fault.DROP, 2))
    got = [fault_for_attempt(plan, attempt) for attempt in range(1, 5)]
    assert got == [Fault.RATE_LIMIT, Fault.DROP, Fault.DROP, None]


def test_without_aiohttp_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the simulator without its extra says what to install."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # what find_spec reads as not installed
    for name in [name for name in sys.modules if name.startswith("imageq.simulator")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'imageq\[simulator\]'"):
        importlib.import_module("imageq.simulator")
