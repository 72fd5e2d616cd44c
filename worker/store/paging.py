"""Pages over index entries, newest first: the pure part of listing jobs and batches.

An index is a sorted set of ids scored by creation time. A listing reads one or more of them
(several statuses), merged newest first, ties broken by id (descending, as ZREVRANGEBYSCORE
orders them). A cursor names a place in that merged order as (score, skip): continue at
`score` and below, passing over the first `skip` entries that have exactly that score (a bulk
run's jobs share one creation time). It stays valid while new jobs arrive, as they are newer.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from imageq.worker.errors import InvalidParams

Entry = tuple[str, float]
"""An index entry: the id and its score (creation time, epoch seconds)."""

_SEPARATOR: Final = "~"


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: entries at `score` or older, less the first `skip` at
    exactly `score`."""

    score: float
    skip: int = 0

    def encode(self) -> str:
        return f"{self.score!r}{_SEPARATOR}{self.skip}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """A cursor printed by a listing; raises `InvalidParams` for anything else."""
        score, sep, skip = text.partition(_SEPARATOR)
        try:
            cursor = cls(float(score), int(skip))
        except ValueError:
            cursor = None
        if not sep or cursor is None or cursor.skip < 0 or cursor.score != cursor.score:
            raise InvalidParams("cursor", f"{text!r} is not a cursor this listing printed")
        return cursor


def merge_newest_first(sources: Iterable[Sequence[Entry]]) -> list[Entry]:
    """Entries of several indexes (each newest first) in one order: newest first, ties by id
    descending; an id in two sources is kept once."""
    merged = heapq.merge(*sources, key=lambda entry: (-entry[1], _Descending(entry[0])))
    seen: set[str] = set()
    kept = []
    for entry in merged:
        if entry[0] not in seen:
            seen.add(entry[0])
            kept.append(entry)
    return kept


def after_cursor(entries: Sequence[Entry], cursor: Cursor | None) -> list[Entry]:
    """`entries` (merged, read from the cursor's score down) less those the cursor passed."""
    if cursor is None:
        return list(entries)
    tied = 0
    kept = []
    for entry in entries:
        if entry[1] == cursor.score and tied < cursor.skip:
            tied += 1
            continue
        kept.append(entry)
    return kept


def cursor_after(taken: Sequence[Entry], start: Cursor | None) -> Cursor | None:
    """The cursor after the entries `taken` (in order, from `start`); None if none taken."""
    if not taken:
        return start
    score = taken[-1][1]
    tied = sum(1 for entry in taken if entry[1] == score)
    if start is not None and start.score == score:
        tied += start.skip
    return Cursor(score, tied)


class _Descending(str):
    """A string that sorts in reverse."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)
