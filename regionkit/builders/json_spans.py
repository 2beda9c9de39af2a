"""Streaming a file whose top level is one huge JSON list: each element with its byte span.

Visual Genome ships gigabyte JSON lists (`region_descriptions.json`, `relationships.json`, ...)
and COCO an object of lists (`instances_train2017.json`: `images`, `annotations`, ...), which
parse to 5-10 times their size as Python objects. `iter_list_spans` (a top-level list) and
`iter_object_spans` (a top-level object) walk such a file in fixed-size chunks and yield every
element with its byte `offset` and `length`, so a driver can keep only what it needs (ids,
counts, spans) while memory stays at about one chunk plus one element; `read_span` later parses
one element's exact bytes on a worker.

How an element's end is found without a Python-level tokenizer (which would crawl at a few
MB/s): JSON's grammar is deterministic, so a byte range that starts at an element and parses as
one complete value ends exactly where that element ends. Each element is first tried up to a
predicted end (the next occurrence of its own opening bytes, e.g. `{"image_id":`, after a
comma), which parses it once at orjson's speed when the prediction holds, as it does for files
written by `json.dump`. Otherwise a window is parsed: orjson reports "content after the
document" at the element's end (in characters, converted back to bytes), a window that ends too
soon is doubled, and a real syntax error is reported with its byte offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from regionkit.builders.base import BuilderInputError
from regionkit.builders.json_lists import IrregularList, ListScan, ScanState, scan_chunk

CHUNK_SIZE = 8 << 20
"""Bytes read at a time: the reader holds about this much plus the element being parsed."""

MIN_WINDOW = 64 << 10
"""Bytes first offered to the parser for an element; doubled while the element is longer."""

PREDICTION_MISSES_ALLOWED = 16
"""Consecutive wrong end predictions after which a file is read by windows only."""

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_JSON_WHITESPACE = b" \t\r\n"
_WHITESPACE_BYTES = frozenset(_JSON_WHITESPACE)
_COMMA = ord(",")
_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))
_LONGEST_SIGNATURE = 64


@dataclass(frozen=True)
class Span:
    """One list element: where its bytes are in the file, and its parsed value."""

    offset: int
    length: int
    value: Any


class _Incomplete(Exception):
    """The window ended inside the element: offer more bytes."""


def _byte_length(data: bytes, start: int, chars: int) -> int:
    """Bytes after `start` up to where character number `chars` starts (orjson counts chars)."""
    length = chars
    while True:
        while start + length < len(data) and data[start + length] in _CONTINUATION_BYTES:
            length += 1
        starts = len(data[start : start + length].translate(None, _CONTINUATION_BYTES))
        if starts >= chars:
            return length
        length += chars - starts


def _describe(byte: int) -> str:
    return repr(chr(byte)) if 0x20 <= byte < 0x7F else f"byte 0x{byte:02x}"


class _Reader:
    """Cursor over a JSON file: `buffer[pos]` is file byte `base + pos`."""

    def __init__(self, file: BinaryIO, path: Path, chunk_size: int, shape: str = "list") -> None:
        self.file = file
        self.path = path
        self.shape = shape
        self.chunk_size = chunk_size
        self.buffer = b""
        self.base = 0
        self.pos = 0
        self.eof = False
        self.min_window = min(MIN_WINDOW, chunk_size)
        self.window = self.min_window
        self.misses = 0

    def error(self, message: str) -> BuilderInputError:
        return BuilderInputError(
            f"{self.path}: not a complete JSON {self.shape}: {message}; "
            "the file may be truncated or corrupt, download it again"
        )

    def fill(self) -> bool:
        """Drop the bytes before the cursor and read one more chunk; False at end of file."""
        chunk = b"" if self.eof else self.file.read(self.chunk_size)
        self.eof = not chunk
        self.buffer = self.buffer[self.pos :] + chunk
        self.base += self.pos
        self.pos = 0
        return bool(chunk)

    def skip_whitespace(self) -> int | None:
        """Move the cursor to the next non-blank byte and return it, or None at end of file."""
        while True:
            self.pos = _WHITESPACE.match(self.buffer, self.pos).end()
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self.fill():
                return None

    def elements(self) -> Iterator[Span]:
        """Every element of the top-level list, in order, then a check that nothing follows."""
        first = self.skip_whitespace()
        if first is None:
            raise self.error("the file is empty")
        if first != ord("["):
            raise self.error(f"the top level is not a list (it starts with {_describe(first)})")
        yield from self.list_elements("the list")
        self.check_end("the list")

    def members(
        self, lists: frozenset[str], scan: bool = False
    ) -> Iterator[tuple[str, Span | ListScan | None]]:
        """The top-level object's members in order (see `iter_object_spans`), then a check
        that nothing follows."""
        first = self.skip_whitespace()
        if first is None:
            raise self.error("the file is empty")
        if first != ord("{"):
            raise self.error(f"the top level is not an object (it starts with {_describe(first)})")
        self.pos += 1
        after = self.skip_whitespace()
        while after != ord("}"):
            if after != ord('"'):
                raise self.error(
                    f"expected a key at byte {self.base + self.pos}, found "
                    f"{'the end of the file' if after is None else _describe(after)}"
                )
            key, length = self.element(0)
            self.pos += length
            if self.skip_whitespace() != ord(":"):
                raise self.error(f"expected ':' after the key {key!r}")
            self.pos += 1
            opening = self.skip_whitespace()
            if key in lists:
                if opening != ord("["):
                    raise self.error(f"the value of {key!r} is not a list")
                if scan:
                    yield key, self.scanned_list(f"{key!r}")
                else:
                    yield key, None
                    for span in self.list_elements(f"{key!r}"):
                        yield key, span
            else:
                if opening is None:
                    raise self.error(f"the file ends before the value of {key!r}")
                offset = self.base + self.pos
                value, length = self.element(0)
                self.pos += length
                yield key, Span(offset, length, value)
            after = self.skip_whitespace()
            if after == ord(","):
                self.pos += 1
                after = self.skip_whitespace()
            elif after not in (ord("}"), None):
                raise self.error(
                    f"expected ',' or '}}' after {key!r} at byte {self.base + self.pos}, "
                    f"found {_describe(after)}"
                )
            if after is None:
                raise self.error("the file ends inside the top-level object")
        self.pos += 1
        self.check_end("the top-level object")

    def list_elements(self, what: str) -> Iterator[Span]:
        """The elements of the list whose `[` is at the cursor; the cursor ends after its `]`."""
        self.pos += 1
        number = 0
        after = self.skip_whitespace()
        while after != ord("]"):
            if after is None:
                raise self.error(f"the file ends inside {what}, before element {number}")
            offset = self.base + self.pos
            value, length = self.element(number)
            yield Span(offset, length, value)
            self.pos += length
            number += 1
            after = self.skip_whitespace()
            if after == ord(","):
                self.pos += 1
                after = self.skip_whitespace()
                if after == ord("]"):
                    raise self.error(
                        f"a comma after the last element at byte {self.base + self.pos}"
                    )
            elif after not in (ord("]"), None):
                raise self.error(
                    f"expected ',' or ']' after element {number - 1} at byte "
                    f"{self.base + self.pos}, found {_describe(after)}"
                )
        self.pos += 1

    def scanned_list(self, what: str) -> ListScan:
        """The list whose `[` is at the cursor, its elements found by `json_lists.scan_chunk`
        one buffer at a time; the cursor ends after its `]`. Raises `IrregularList` when the
        file ends first."""
        opened = self.base + self.pos
        self.pos += 1
        state = ScanState()
        starts, ends = [], []
        while True:
            at = self.base + self.pos
            found = scan_chunk(np.frombuffer(self.buffer, np.uint8, offset=self.pos), state)
            starts.append(found.starts + at)
            ends.append(found.ends + at + 1)
            if found.close is not None:
                self.pos += found.close + 1
                break
            self.pos = len(self.buffer)
            if not self.fill():
                raise IrregularList(f"{self.path}: the file ends inside {what}")
        return ListScan(
            opened, self.base + self.pos - 1, np.concatenate(starts), np.concatenate(ends)
        )

    def check_end(self, what: str) -> None:
        """Nothing but whitespace may follow the top-level value."""
        trailing = self.skip_whitespace()
        if trailing is not None:
            raise self.error(
                f"{_describe(trailing)} after the end of {what} at byte {self.base + self.pos}"
            )

    def element(self, number: int) -> tuple[Any, int]:
        """Parse the element at the cursor: its value and its length in bytes."""
        while True:
            end = self.pos + self.window
            if end > len(self.buffer) and self.fill():
                continue
            end = self.cut(min(end, len(self.buffer)))
            try:
                parsed = self.predicted(end)
                if parsed is None:
                    parsed = self.windowed(end, number)
            except _Incomplete:
                if self.at_file_end(end):
                    raise self.error(
                        f"element {number} at byte {self.base + self.pos} is cut off by the "
                        "end of the file"
                    ) from None
                self.window *= 2
                continue
            self.window = max(self.min_window, 4 * parsed[1])
            return parsed

    def cut(self, end: int) -> int:
        """`end`, moved back so as not to split a UTF-8 character (orjson rejects half of one)."""
        if end >= len(self.buffer):
            if self.eof:
                return end
            # the next byte is not read yet: step back before the last character if not ASCII
            for _ in range(3):
                if end <= 1 or self.buffer[end - 1] not in _CONTINUATION_BYTES:
                    break
                end -= 1
            return end - 1 if end > 1 and self.buffer[end - 1] >= 0xC0 else end
        for _ in range(3):
            if end <= 1 or self.buffer[end] not in _CONTINUATION_BYTES:
                break
            end -= 1
        return end

    def at_file_end(self, end: int) -> bool:
        return end >= len(self.buffer) and self.eof

    def predicted(self, end: int) -> tuple[Any, int] | None:
        """Parse up to where the next element that opens like this one starts, if that works."""
        if self.misses >= PREDICTION_MISSES_ALLOWED or self.buffer[self.pos] != ord("{"):
            return None
        colon = self.buffer.find(b":", self.pos, min(end, self.pos + _LONGEST_SIGNATURE))
        if colon < 0:
            return None
        buffer = self.buffer
        signature = buffer[self.pos : colon + 1]
        following = buffer.find(signature, colon, end)
        if following < 0:
            return None
        last = following - 1  # back over the separator, without copying the element
        while buffer[last] in _WHITESPACE_BYTES:
            last -= 1
        if buffer[last] != _COMMA:
            self.misses += 1
            return None
        last -= 1
        while buffer[last] in _WHITESPACE_BYTES:
            last -= 1
        stop = last + 1 - self.pos
        try:
            value = orjson.loads(memoryview(self.buffer)[self.pos : self.pos + stop])
        except orjson.JSONDecodeError:
            self.misses += 1
            return None
        self.misses = 0
        return value, stop

    def windowed(self, end: int, number: int) -> tuple[Any, int]:
        """Parse `buffer[pos:end]`: the element if it ends inside, else `_Incomplete`."""
        view = memoryview(self.buffer)
        try:
            value = orjson.loads(view[self.pos : end])
        except orjson.JSONDecodeError as error:
            stop = _byte_length(self.buffer, self.pos, error.pos)
            if stop >= end - self.pos:
                raise _Incomplete from None
            stop = len(self.buffer[self.pos : self.pos + stop].rstrip(_JSON_WHITESPACE))
            try:  # a complete value followed by more content: the element ends there
                return orjson.loads(view[self.pos : self.pos + stop]), stop
            except orjson.JSONDecodeError:
                pass
            invalid = self.invalid_utf8(end)
            if invalid is None:
                raise self.error(
                    f"element {number} at byte {self.base + self.pos}: {error.msg} "
                    f"at byte {self.base + self.pos + stop}"
                ) from None
            return self.before_invalid(invalid, number)
        if not self.at_file_end(end) and isinstance(value, (int, float)):
            raise _Incomplete  # `12` may be the start of `123`
        return value, len(self.buffer[self.pos : end].rstrip(_JSON_WHITESPACE))

    def invalid_utf8(self, end: int) -> int | None:
        """Where the first byte that is not UTF-8 lies before `end`, if any."""
        try:
            self.buffer[self.pos : end].decode("utf-8")
        except UnicodeDecodeError as bad:
            return self.pos + bad.start
        return None

    def before_invalid(self, invalid: int, number: int) -> tuple[Any, int]:
        """The element if it ends before the bad byte at `invalid` (orjson rejects the whole
        window, so the bad byte may belong to a later element), else an error locating it."""
        try:
            if invalid > self.pos:
                return self.windowed(invalid, number)
        except _Incomplete:
            pass
        raise self.error(
            f"element {number} at byte {self.base + self.pos}: invalid UTF-8 at byte "
            f"{self.base + invalid}"
        )


def iter_list_spans(path: Path, chunk_size: int = CHUNK_SIZE) -> Iterator[Span]:
    """Every element of the JSON list in `path` with its byte offset and length, in file order.

    Memory stays at about `chunk_size` plus the largest element whatever the file's size.
    Raises `BuilderInputError` naming the file and the byte offset (and element number) when the
    top level is not a list, an element is malformed, or the file ends before the list does.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with open(path, "rb") as file:
        yield from _Reader(file, Path(path), chunk_size).elements()


def iter_object_spans(
    path: Path, lists: frozenset[str], chunk_size: int = CHUNK_SIZE, scan: bool = False
) -> Iterator[tuple[str, Span | ListScan | None]]:
    """The members of the JSON object in `path`, in file order, as (key, span).

    A key in `lists` (COCO's `images`, `annotations`) must hold a list: it gives `(key, None)`
    where the list starts (so an empty list is seen too), then one span per element; with
    `scan`, it gives one `(key, ListScan)` instead, for reading the list in bulk (`json_lists`),
    or raises `IrregularList`. Any other key gives one span of its whole value (`info`,
    `categories`). Memory stays at about `chunk_size` plus the largest element or other value.
    Raises `BuilderInputError` naming the file and the byte offset when it is not one complete
    object or a listed key is no list.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with open(path, "rb") as file:
        yield from _Reader(file, Path(path), chunk_size, "object").members(lists, scan)


def read_span(path: Path, offset: int, length: int) -> Any:
    """Parse the element `iter_list_spans` found at `offset` (a worker's exact re-read)."""
    return next(read_spans(path, [(offset, length)]))


def read_spans(path: Path, spans: Iterable[tuple[int, int]]) -> Iterator[Any]:
    """Parse each (offset, length) span of `path` in turn, through one open file; a span that
    is no longer one JSON value raises `BuilderInputError` naming the file and the offset.

    The file is read unbuffered: spans are scattered, and a buffered read would copy a block
    around each one (half the cost of reading a COCO annotation back).
    """
    with open(path, "rb", buffering=0) as file:
        for offset, length in spans:
            file.seek(offset)
            data = file.read(length)
            try:
                yield orjson.loads(data)
            except orjson.JSONDecodeError as error:
                raise BuilderInputError(
                    f"{path}: the {length} bytes at offset {offset} are no longer one JSON "
                    f"value ({error.msg}); the file changed after it was indexed, rebuild"
                ) from None
