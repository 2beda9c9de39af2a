"""Checking an untrusted record's required fields before reading them."""

from __future__ import annotations

from typing import Any

_MISSING = object()


_TYPE_WORDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def json_kind(value: Any) -> str:
    """What a parsed value is, in the words of JSON: `a string`, `null`, `an object`, ..."""
    if value is None:
        return "null"
    return _TYPE_WORDS.get(type(value), f"a {type(value).__name__}")


def field_problem(record: Any, required: dict[str, type | tuple[type, ...]]) -> str | None:
    """The first required field that is missing or of the wrong type, as a message, else None.

    `bool` never passes for `int` (JSON `true` is not an id). A tuple of types accepts any of them.
    """
    if not isinstance(record, dict):
        return f"record is {json_kind(record)}, not an object"
    for name, kind in required.items():
        value = record.get(name, _MISSING)
        if type(value) is kind:  # the common case, decided at once (indexes check millions)
            continue
        if value is _MISSING:
            return f"field {name!r} is missing"
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            expected = " or ".join(_TYPE_WORDS.get(k, k.__name__) for k in kinds)
            return f"field {name!r} should be {expected}, got {json_kind(value)}"
    return None


class RecordError(ValueError):
    """A record (or a part of one) that cannot be used: a quarantine `code` and a message.

    Builders raise it from deep inside a record's parsing, where the record's key, file and units
    are out of reach, and catch it at the record's level to turn it into one `Rejected`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
