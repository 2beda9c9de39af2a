"""Big JSON lists of objects read in bulk: element boundaries found by a vectorised scan, runs
of elements parsed in one call each, anywhere.

`json_spans` walks a list element by element, a Python step and a parser call per element
(about 15 µs, most of it not parsing). COCO's `annotations` is 860k elements, so indexing it
that way is seconds of serial work before any worker starts. Here a list is found in two
phases that scale:

1. `scan_chunk` finds the brackets that are not inside strings (a quote counts unless an odd
   run of backslashes precedes it) and their depths, with numpy over a few MB at a time; an
   element that is an object or a list starts at a bracket opening depth 2 and ends at one
   closing it. The scan runs at hundreds of MB/s and holds one chunk.
2. The elements are cut into runs of a few MB (`ListScan.runs`), and each run is parsed by one
   `orjson.loads` of its bytes wrapped in `[` `]` (`parse_run`), on any worker, holding about
   ten times the run's bytes while it runs.

The scan sees brackets only, so what it cannot see is checked by the parse: a run parses only
if its bytes hold exactly its elements separated by commas. Anything else (a scalar element,
a syntax error, bytes that are not UTF-8) makes `parse_run` return None, and the caller reads
the file with the exact element walk of `json_spans`, which names the byte at fault.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
import orjson

from regionkit.builders.files import paused_gc

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_BRACKET_STEP = np.zeros(256, dtype=np.int64)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1
_WHITESPACE = b" \t\r\n"
_NOT_BLANK = re.compile(rb"[^ \t\r\n]")


class IrregularList(Exception):
    """A list the bulk reading cannot take (the file ends inside it): walk it element by
    element, which says exactly what is wrong."""


@dataclass
class ScanState:
    """Where a scan stands between chunks.

    Attributes:
        depth: brackets open (1 inside the scanned list, 2 inside one of its elements).
        in_string: the chunk starts inside a string.
        backslashes: backslashes ending the previous chunk (an odd count escapes a first quote).
    """

    depth: int = 1
    in_string: bool = False
    backslashes: int = 0


@dataclass(frozen=True)
class ChunkScan:
    """What one chunk holds of the list: its elements' first and last bytes (chunk positions),
    and the position of the `]` closing the list, if the list ends in this chunk."""

    starts: np.ndarray
    ends: np.ndarray
    close: int | None


def _unescaped_quotes(chunk: np.ndarray, state: ScanState) -> np.ndarray:
    """Positions of the quotes that open or close strings (not `\\"`); updates the carried
    backslash count."""
    quotes = np.flatnonzero(chunk == _QUOTE)
    is_backslash = chunk == _BACKSLASH
    if not (state.backslashes or is_backslash.any()):
        return quotes
    positions = np.arange(chunk.size)
    last_other = np.maximum.accumulate(np.where(is_backslash, -1, positions))
    before = np.maximum(quotes - 1, 0)
    run = quotes - 1 - last_other[before]
    from_start = (quotes == 0) | (last_other[before] < 0)
    run = np.where(from_start, quotes + state.backslashes, run)
    tail = chunk.size - 1 - last_other[-1]
    state.backslashes = tail + state.backslashes if last_other[-1] < 0 else tail
    return quotes[run % 2 == 0]


def scan_chunk(chunk: np.ndarray, state: ScanState) -> ChunkScan:
    """Scan a chunk of a list's bytes (after its `[`) from `state`, which it updates."""
    quotes = _unescaped_quotes(chunk, state)
    # `[ ] { }` are the only bytes with these bits (besides `Y _ y DEL`, removed next)
    candidates = np.flatnonzero((chunk & 0xD9) == 0x59)
    steps = _BRACKET_STEP[chunk[candidates]]
    candidates, steps = candidates[steps != 0], steps[steps != 0]
    outside = (np.searchsorted(quotes, candidates) + state.in_string) % 2 == 0
    brackets, steps = candidates[outside], steps[outside]
    after = state.depth + np.cumsum(steps)
    closed = np.flatnonzero(after == 0)
    close = None
    if closed.size:
        close = int(brackets[closed[0]])
        brackets, steps, after = (a[: closed[0]] for a in (brackets, steps, after))
    state.depth = int(after[-1]) if after.size else state.depth
    state.in_string = bool((state.in_string + quotes.size) % 2)
    return ChunkScan(
        brackets[(steps == 1) & (after == 2)], brackets[(steps == -1) & (after == 1)], close
    )


@dataclass(frozen=True)
class ElementRun:
    """Consecutive elements of a list, and the bytes they fill.

    Attributes:
        first: the position of the first element in the list.
        starts, ends: each element's first byte and the byte after its last (file offsets).
        begin, stop: the run's bytes, `[begin, stop)`: from the first element (or, for a list's
            first run, the byte after its `[`) to the next run's first element (or the `]`).
        last: whether the list's `]` ends the run (no comma may follow its last element).
    """

    first: int
    starts: np.ndarray
    ends: np.ndarray
    begin: int
    stop: int
    last: bool


@dataclass(frozen=True)
class ListScan:
    """A scanned list: where it opens and closes, and its object or list elements.

    Attributes:
        open, close: the offsets of its `[` and its `]`.
        starts, ends: each element's first byte and the byte after its last.
    """

    open: int
    close: int
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def whole(self) -> ElementRun:
        """All the elements as one run."""
        return ElementRun(0, self.starts, self.ends, self.open + 1, self.close, True)

    def runs(self, run_bytes: int) -> list[ElementRun]:
        """The elements cut into runs of about `run_bytes`, covering the list's bytes."""
        if not len(self):
            return [self.whole()]
        count = max(1, round((self.close - self.open) / run_bytes))
        targets = self.open + (self.close - self.open) * np.arange(1, count) // count
        cuts = np.unique(np.searchsorted(self.starts, targets).clip(1, len(self)))
        bounds = [0, *cuts[cuts < len(self)].tolist(), len(self)]
        runs = []
        for i, j in itertools.pairwise(bounds):
            last = j == len(self)
            runs.append(
                ElementRun(
                    i,
                    self.starts[i:j],
                    self.ends[i:j],
                    self.open + 1 if i == 0 else int(self.starts[i]),
                    self.close if last else int(self.starts[j]),
                    last,
                )
            )
        return runs


def parse_run(path: str, run: ElementRun) -> list[object] | None:
    """The run's elements, parsed in one call; None when its bytes hold anything but its
    elements and the commas between them (the caller then walks the file exactly).

    The bytes are read into a buffer one byte wider on each side, and brackets are written
    over the blanks (or the trailing comma) around the elements, so the run is parsed without
    a copy.
    """
    size = run.stop - run.begin
    buffer = bytearray(size + 2)
    with open(path, "rb") as file:
        file.seek(run.begin)
        if file.readinto(memoryview(buffer)[1 : size + 1]) != size:
            return None
    first = _NOT_BLANK.search(buffer, 1, size + 1)
    if first is None:
        return [] if not len(run.starts) else None
    last = _last_not_blank(buffer, size)
    close = last + 1
    if not run.last:  # the comma before the next run becomes the closing bracket
        if buffer[last] != ord(","):
            return None
        close = last
    begin = first.start() - 1
    buffer[begin], buffer[close] = ord("["), ord("]")
    try:
        with paused_gc():
            values = orjson.loads(memoryview(buffer)[begin : close + 1])
    except orjson.JSONDecodeError:
        return None
    return values if len(values) == len(run.starts) else None


def _last_not_blank(buffer: bytearray, end: int) -> int:
    """The position of the last byte at or before `end` that is not JSON whitespace."""
    while buffer[end] in _WHITESPACE:
        end -= 1
    return end
