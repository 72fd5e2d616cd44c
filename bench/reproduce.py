"""`python -m bench.reproduce COMMITTED NEW`: whether a new run reproduces a committed one.

For each N both runs have and each ratio imageq/naive (and each multiple of the floor, when
both runs measured it), it sets the committed figure, median (min-max) over its pairs, beside
the new one and says: whether the new median falls within the committed range, whether the
two ranges overlap (by how much, or how far apart they are), and how far the medians differ.
A committed figure of one pair has no range: only the difference is shown. Exits 1 if some
figure was not reproduced (neither within nor overlapping), else 0. `python -m bench.run
--check-against COMMITTED` does the same after its run, into `reproduction.md`.

COMMITTED and NEW are results.json files (or folders holding one).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.floor_model import floor_of
from bench.floor_report import job_multiples, poll_multiples
from bench.measures import Spread
from bench.pairing import by_design, load_text, ns_of, ratio_spread_at

# The ratios compared, with their labels.
RATIOS: Final = (
    ("cpu_s_per_job", "worker CPU per job, imageq/naive"),
    ("polls_per_job", "polls per job, imageq/naive"),
    ("lag_p50_s", "lag p50, imageq/naive"),
    ("lag_p99_s", "lag p99, imageq/naive"),
    ("rss_growth_kb_per_job", "RSS growth per job, imageq/naive"),
    ("redis_kb_per_job", "Redis per job, imageq/naive"),
)
REPRODUCED: Final = "reproduced: new median within the committed range"
OVERLAP: Final = "ranges overlap; new median outside the committed range"
NOT_REPRODUCED: Final = "NOT reproduced: the ranges are apart"
NO_RANGE: Final = "committed figure has one value: no range to check against"
# One more digit than the report: a median on the edge of a range shows on which side it is.
FORM: Final = "{:.3f}"


@dataclass(frozen=True)
class Check:
    """One figure of the committed run against the same figure of the new run."""

    committed: Spread
    new: Spread

    @property
    def within(self) -> bool:
        return self.committed.low <= self.new.median <= self.committed.high

    @property
    def overlap(self) -> float:
        """Width the two ranges share; negative: how far apart they are."""
        return min(self.committed.high, self.new.high) - max(self.committed.low, self.new.low)

    @property
    def difference(self) -> float:
        """New median minus committed median."""
        return self.new.median - self.committed.median

    @property
    def verdict(self) -> str:
        if self.committed.count < 2:
            return NO_RANGE
        if self.within:
            return REPRODUCED
        return OVERLAP if self.overlap >= 0 else NOT_REPRODUCED


Figure = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any], int], Spread]


def figures(committed: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Figure]]:
    """The figures to compare: the ratios, and the floor multiples if both runs have a floor."""
    found: list[tuple[str, Figure]] = [(label, _ratio(key)) for key, label in RATIOS]
    if floor_of(committed["meta"]) is not None and floor_of(new["meta"]) is not None:
        found += [
            ("imageq CPU per job, x per-job floor", _multiple(job_multiples)),
            ("imageq CPU per poll, x per-poll floor", _multiple(poll_multiples)),
        ]
    return found


def _ratio(key: str) -> Figure:
    def figure(results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], n: int) -> Spread:
        return ratio_spread_at(results, n, key)

    return figure


def _multiple(of: Callable[[Sequence[Any], Any], Spread]) -> Figure:
    def figure(results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], n: int) -> Spread:
        floor = floor_of(meta)
        assert floor is not None  # figures() offers it only then
        return of(by_design(results, n).get("imageq", []), floor)

    return figure


def compare(committed: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[int, str, Check]]:
    """(N, figure, check) for every N both runs have."""
    both = sorted(set(ns_of(committed["results"])) & set(ns_of(new["results"])))
    return [
        (n, label, Check(figure(committed["results"], committed["meta"], n),
                         figure(new["results"], new["meta"], n)))
        for n in both
        for label, figure in figures(committed, new)
    ]  # fmt: skip


def render(committed: Mapping[str, Any], new: Mapping[str, Any], names: tuple[str, str]) -> str:
    checks = compare(committed, new)
    lines = [
        "# Reproduction check",
        "",
        *(
            f"- {which}: `{name}`, {run['meta']['facts']['date']}, "
            f"`{run['meta']['facts']['command'].strip()}`, {load_text(run['results'])} over "
            "its rounds"
            for which, name, run in (("committed", names[0], committed), ("new", names[1], new))
        ),
        "",
        "Each figure: median (min-max) over the run's pairs (ratios) or imageq runs (floor "
        "multiples). Reproduced: the new median falls within the committed range. Ranges: the "
        "width both ranges share, or (negative) how far apart they are.",
        "",
        "| N | figure | committed | new | new - committed | ranges | verdict |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for n, label, check in checks:
        if check.committed.count == 0 or check.new.count == 0:
            continue
        ranges = "-" if check.committed.count < 2 else f"{check.overlap:+.3f}"
        lines.append(
            f"| {n:,} | {label} | {check.committed.text(FORM)} | {check.new.text(FORM)} |"
            f" {check.difference:+.3f} | {ranges} | {check.verdict} |"
        )
    verdicts = [check.verdict for _, _, check in checks if check.new.count]
    lines += ["", _summary(verdicts), ""]
    return "\n".join(lines)


def _summary(verdicts: Sequence[str]) -> str:
    counts = {verdict: verdicts.count(verdict) for verdict in dict.fromkeys(verdicts)}
    return "Summary: " + "; ".join(f"{count} {verdict}" for verdict, count in counts.items())


def load(path: Path) -> dict[str, Any]:
    """A results.json, given as the file or its folder."""
    file = path / "results.json" if path.is_dir() else path
    saved: dict[str, Any] = json.loads(file.read_text())
    return saved


def compare_files(committed: Path, new: Path) -> str:
    return render(load(committed), load(new), (str(committed), str(new)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reproduce",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("committed", type=Path, help="the committed run's results.json")
    parser.add_argument("new", type=Path, help="the new run's results.json")
    parser.add_argument("--out", type=Path, default=None, help="also write the check here")
    args = parser.parse_args(argv)
    committed, new = load(args.committed), load(args.new)
    text = render(committed, new, (str(args.committed), str(args.new)))
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    failed = any(check.verdict == NOT_REPRODUCED for _, _, check in compare(committed, new))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
