"""Checking an untrusted record's required fields before reading them."""

from __future__ import annotations

from typing import Any


def field_problem(record: Any, required: dict[str, type | tuple[type, ...]]) -> str | None:
    """The first required field that is missing or of the wrong type, as a message, else None.

    `bool` never passes for `int` (JSON `true` is not an id). A tuple of types accepts any of them.
    """
    if not isinstance(record, dict):
        return f"record is a {type(record).__name__}, not an object"
    for name, kind in required.items():
        if name not in record:
            return f"field {name!r} is missing"
        value = record[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            expected = (
                " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            )
            return f"field {name!r} should be {expected}, got {type(value).__name__}"
    return None
