"""The sizing model's coefficients: the measured ones shipped with the package
(`sizing_coefficients.json`, from bench/results/sizing/results.json), others read from a file
of the same form, and single figures overridden."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from importlib import resources
from typing import Any, Final

from imageq.ops.sizing_model import MODES, Coefficients, Cost

COEFFICIENTS_FILE: Final = "sizing_coefficients.json"


def load_coefficients(text: str | None = None) -> dict[str, Coefficients]:
    """The shipped coefficients per mode (or those in `text`, the same JSON)."""
    if text is None:
        text = resources.files("imageq.ops").joinpath(COEFFICIENTS_FILE).read_text()
    document = json.loads(text)
    return {mode: coefficients_from(document["modes"][mode]) for mode in MODES}


def coefficients_from(values: dict[str, Any]) -> Coefficients:
    """Coefficients from their JSON form: a cost is `{"per_job": x, "per_poll": y}`."""
    found: dict[str, Any] = {}
    for field in fields(Coefficients):
        value = values[field.name]
        found[field.name] = Cost(**value) if isinstance(value, dict) else float(value)
    return Coefficients(**found)


def with_overrides(coefficients: Coefficients, **overrides: float | None) -> Coefficients:
    """`coefficients` with some figures replaced: a cost's name replaces its per-job part,
    `NAME_per_poll` its per-poll part, a memory figure's name the figure (None: kept)."""
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        name = key.removesuffix("_per_poll")
        current = changes.get(name, getattr(coefficients, name))
        if isinstance(current, Cost):
            part = "per_poll" if key.endswith("_per_poll") else "per_job"
            changes[name] = replace(current, **{part: value})
        else:
            changes[name] = value
    return replace(coefficients, **changes)
