"""From the cost rounds to the model's coefficients: each cost split in a part per job and a
part per poll, per repetition, then the median and the spread (min, max) over repetitions.
Pure: no I/O."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

Round = Mapping[str, Any]

# Costs that grow with the polls, as the model names them, and how each is read from a round.
SPLIT: Final[dict[str, Callable[[Round], float]]] = {
    "worker_cpu_ms": lambda r: r["worker_cpu_ms_per_job"],
    "redis_cpu_ms": lambda r: r["broker_cpu_ms_per_job"] + r["store_cpu_ms_per_job"],
    "broker_messages": lambda r: r["broker_messages_per_job"],
    "redis_commands": lambda r: r["broker_commands_per_job"] + r["store_commands_per_job"],
    "api_requests": lambda r: r["api_requests_per_job"],
    "network_bytes": lambda r: r["redis_net_bytes_per_job"] + r["http_bytes_per_job"],
    # Not the model's, for the check on this machine: the rest of the run shares its cores.
    "simulator_cpu_ms": lambda r: r["simulator_cpu_ms_per_job"],
    "bench_cpu_ms": lambda r: r["bench_cpu_ms_per_job"],
}
# Costs read from the realistic rounds as they are.
FLAT: Final[dict[str, Callable[[Round], float]]] = {
    "redis_bytes_in_flight": lambda r: (
        r["broker_peak_bytes_per_job"] + r["store_peak_bytes_per_job"]
    ),
    "redis_bytes_finished": lambda r: r["store_retained_bytes_per_job"],
}
MODEL_FIELDS: Final = (*tuple(SPLIT)[:6], *FLAT)


def split(realistic: Round, one_poll: Round, read: Callable[[Round], float]) -> tuple[float, float]:
    """(per job, per poll) from two rounds that differ in polls per job: a line through both."""
    polls_r, polls_s = realistic["polls_per_job"], one_poll["polls_per_job"]
    per_poll = (read(realistic) - read(one_poll)) / (polls_r - polls_s)
    return read(one_poll) - per_poll * polls_s, per_poll


def spread(values: Sequence[float]) -> dict[str, float]:
    """The median and the range."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fit_mode(rounds: Sequence[Round], mode: str) -> dict[str, Any]:
    """Per cost of one mode: the split's median and spread over the repetitions paired by rep."""
    by_rep: dict[int, dict[str, Round]] = {}
    for r in rounds:
        if r["mode"] == mode:
            by_rep.setdefault(r["rep"], {})[r["workload"]] = r
    pairs = [(w["realistic"], w["one-poll"]) for w in by_rep.values() if len(w) == 2]
    if not pairs:
        raise ValueError(f"no pair of rounds for mode {mode}")
    fitted: dict[str, Any] = {}
    for name, read in SPLIT.items():
        parts = [split(real, short, read) for real, short in pairs]
        fitted[name] = {
            "per_job": spread([job for job, _ in parts]),
            "per_poll": spread([poll for _, poll in parts]),
            "at_realistic": spread([read(real) for real, _ in pairs]),
        }
    for name, read in FLAT.items():
        fitted[name] = spread([read(real) for real, _ in pairs])
    fitted["polls_per_job"] = spread([real["polls_per_job"] for real, _ in pairs])
    fitted["lag_p99_s"] = spread([real["lag_p99_s"] for real, _ in pairs])
    fitted["generation_pairs"] = len(pairs)
    return fitted


def model_coefficients(fitted: Mapping[str, Any]) -> dict[str, Any]:
    """The medians, in the form `imageq.ops.sizing_coefficients.coefficients_from` reads."""
    values: dict[str, Any] = {}
    for name in MODEL_FIELDS:
        entry = fitted[name]
        if "per_job" in entry:
            values[name] = {
                "per_job": round(entry["per_job"]["median"], 4),
                "per_poll": round(entry["per_poll"]["median"], 4),
            }
        else:
            values[name] = round(entry["median"], 1)
    return values


def machine_cpu_ms_per_job(fitted: Mapping[str, Any]) -> float:
    """CPU per realistic job of every part of the run: what this machine's cores are shared by."""
    parts = ("worker_cpu_ms", "redis_cpu_ms", "simulator_cpu_ms", "bench_cpu_ms")
    return float(sum(fitted[part]["at_realistic"]["median"] for part in parts))
