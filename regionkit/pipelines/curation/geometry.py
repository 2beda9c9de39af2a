"""Where two regions lie relative to each other, from their boxes: the spatial facts a
relation text may state, and a check that what a text states agrees with them.

Image axes: x grows to the right, y grows downwards, so `above` means a smaller y.
"""

from __future__ import annotations

import re

Box = list[float]

OPPOSITE = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}
DIRECTIONS = tuple(OPPOSITE)
"""The four directions a text may put one region in from another."""


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def direction(box: Box, other: Box) -> str:
    """Where `other` lies from `box` as `to its right`: by their centres along the axis they
    differ most on (a loose word for context, never a claim to check)."""
    (x, y), (ox, oy) = _centre(box), _centre(other)
    if abs(ox - x) >= abs(oy - y):
        return "to its right" if ox > x else "to its left"
    return "below it" if oy > y else "above it"


def clear_direction(box: Box, other: Box) -> str | None:
    """Where `box` lies from `other` (`to the left of`, ...) when no other of the four words
    could also be said: the boxes apart along one axis and overlapping along the other.
    None when the layout is ambiguous (diagonal, overlapping, nested)."""
    x_overlap = box[0] < other[2] and other[0] < box[2]
    y_overlap = box[1] < other[3] and other[1] < box[3]
    if y_overlap and not x_overlap:
        return "to the left of" if box[2] <= other[0] else "to the right of"
    if x_overlap and not y_overlap:
        return "above" if box[3] <= other[1] else "below"
    return None


def holds(box: Box, other: Box, words: str) -> bool:
    """Whether `box` lies `words` (one of `DIRECTIONS`) from `other`, by their centres."""
    (x, y), (ox, oy) = _centre(box), _centre(other)
    return {
        "to the left of": x < ox,
        "to the right of": x > ox,
        "above": y < oy,
        "below": y > oy,
    }[words]


_CLAIM = re.compile(
    r"\b(to the left of|to the right of|left of|right of|above|below|under|beneath|over)"
    r"\s+<region(\d+)>"
)
_TAG = re.compile(r"<region(\d+)>")
_WORDS = {
    "left of": "to the left of",
    "right of": "to the right of",
    "under": "below",
    "beneath": "below",
    "over": "above",
}


def spatial_claims(text: str) -> list[tuple[int, str, int]]:
    """(a, direction, b) for each `... left of <regionB>` whose sentence names another region
    before it, `<regionA>` being the last such one: the subject the claim is about."""
    claims = []
    for part in re.split(r"(?<=[.!?])\s+", text):
        for match in _CLAIM.finditer(part):
            b = int(match.group(2))
            before = [int(k) for k in _TAG.findall(part[: match.start()]) if int(k) != b]
            if before:
                claims.append((before[-1], _WORDS.get(match.group(1), match.group(1)), b))
    return claims
