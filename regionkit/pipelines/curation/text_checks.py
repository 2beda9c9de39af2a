"""Checks on generated text: what a region dataset's answers must never contain.

Generated text speaks as if looking at the image: no talk of boxes, annotations or
coordinates, no label artefacts (`traffic_light`, `None`, `{category}`), and no category the
image is not known to hold. A category counts as present when a region of the row has it or a
source text of the row (a human's sentence) names it.
"""

from __future__ import annotations

import re
from typing import Any

from regionkit.catalog.markup import MARKUP, REJECT

COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
"""COCO's 80 thing categories: the vocabulary answers are checked against. COCO annotates
them exhaustively, so an answer naming one the image lacks describes something not there."""

SYNONYMS = {
    "person": ("man", "men", "woman", "women", "people", "boy", "girl", "child", "player"),
    "couch": ("sofa",),
    "tv": ("television",),
    "airplane": ("plane", "aeroplane"),
    "motorcycle": ("motorbike",),
    "cell phone": ("phone", "mobile phone"),
    "dining table": ("table",),
    "donut": ("doughnut",),
}
"""Words that name a vocabulary category too: present if any is, absent only if all are."""

AMBIGUOUS = {"orange", "tie", "bear", "train", "sink", "remote", "mouse"}
"""Category names that are as often another word (a colour, a verb): not checked."""

_NAMES = {
    category: (category, *SYNONYMS.get(category, ()))
    for category in COCO_CATEGORIES
    if category not in AMBIGUOUS
}
_PATTERNS = {
    category: re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")s?\b", re.I)
    for category, names in _NAMES.items()
}

_META = r"\b(bounding[ -]?box(es)?|annotat\w*|coordinates?|pixels?)\b"
_INPUT_TALK = r"\b(according to|as described|the (given|provided) (facts|description))\b"
ARTEFACTS = (
    (re.compile(_META, re.I), "meta words"),
    (re.compile(_INPUT_TALK, re.I), "talk of the input"),
    (re.compile(r"\w_\w"), "an underscore (a label, not a word)"),
    (re.compile(r"\b(None|null|NaN|undefined)\b"), "an empty value"),
    (re.compile(r"[{}]"), "braces (a template slot)"),
    (re.compile(r"[\[(]\s*-?\d+(\.\d+)?\s*,\s*-?\d+"), "coordinates in brackets"),
)  # fmt: skip
"""(pattern, what it is): text that gives away where the data came from, or a broken slot."""


def without_markup(text: str) -> str:
    return MARKUP.sub(" ", text).replace(REJECT, " ")


def word_count(text: str) -> int:
    """Words of `text`, markup not counted."""
    return len(without_markup(text).split())


def artefacts(text: str) -> list[str]:
    """What in `text` gives away boxes, labels or template slots, quoted."""
    plain = without_markup(text)
    found = []
    for pattern, what in ARTEFACTS:
        match = pattern.search(plain)
        if match:
            found.append(f"{what} ({match.group(0)!r})")
    return found


def named_categories(text: str) -> set[str]:
    """The vocabulary categories `text` names (a synonym names its category)."""
    return {category for category, pattern in _PATTERNS.items() if pattern.search(text)}


def known_categories(row: dict[str, Any]) -> set[str]:
    """The vocabulary categories the row is known to hold: its regions' and its source texts'."""
    known = named_categories(" ".join(r["category"] or "" for r in row["regions"]))
    sources = [g["text"] for g in row["groundings"]] + list(row["captions"])
    return known | named_categories(" ".join(sources))


def absent_categories(text: str, known: set[str]) -> list[str]:
    """Vocabulary categories `text` names that the row is not known to hold."""
    return sorted(named_categories(text) - known)
