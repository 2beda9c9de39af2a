"""What is known about a region, gathered from its row: the facts every generator writes from.

Position and size are words computed from the box (the LLM never sees or writes coordinates);
texts are the source's own sentences about the region alone; relations are the source's
triplets read from the region's side.
"""

from __future__ import annotations

import re
from typing import Any

from regionkit.pipelines.curation.dialogue import with_article
from regionkit.pipelines.curation.geometry import direction

CROWD = "crowd"
"""The attribute builders give a COCO crowd annotation."""

TINY_AREA_FRACTION = 0.001
TINY_SIDE_PX = 16.0
"""A box under 0.1% of the image or under 16 px on a side is too small to talk about."""

PLAIN_CATEGORY = re.compile(r"^[a-z][a-z' -]*$")
"""A category that reads as a noun (`traffic light`), not a code (`other/people`, `n02084071`)."""


def box_area(box: list[float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def is_talkable(row: dict[str, Any], k: int) -> bool:
    """Whether region `k` may be talked about: not a crowd, not tiny."""
    region = row["regions"][k]
    box = region["bbox"]
    if CROWD in region["attributes"]:
        return False
    if box[2] - box[0] < TINY_SIDE_PX or box[3] - box[1] < TINY_SIDE_PX:
        return False
    return box_area(box) >= TINY_AREA_FRACTION * row["width"] * row["height"]


def can_target(row: dict[str, Any], k: int) -> bool:
    """Whether region `k` may be an answer's mask (`<segK>`): talkable, and it has a mask."""
    return row["regions"][k]["mask"] is not None and is_talkable(row, k)


def plain_category(region: dict[str, Any]) -> str | None:
    category = (region["category"] or "").strip().lower()
    return category if PLAIN_CATEGORY.match(category) else None


def position_words(box: list[float], width: int, height: int) -> str:
    """`top left`, `center`, `bottom right`, ...: where the box's centre falls in thirds."""
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    column = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "center"
    line = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else "middle"
    if line == "middle":
        return "center" if column == "center" else f"middle {column}"
    return line if column == "center" else f"{line} {column}"


def size_words(box: list[float], width: int, height: int) -> str:
    """How much of the image the box covers, as a word."""
    fraction = box_area(box) / (width * height)
    for bound, word in ((0.01, "tiny"), (0.05, "small"), (0.25, "medium-sized"), (0.6, "large")):
        if fraction < bound:
            return word
    return "very large"


def region_texts(row: dict[str, Any], k: int) -> list[str]:
    """The source's texts about region `k` alone (a RefCOCO sentence, a VG description),
    distinct, in order."""
    texts = []
    for grounding in row["groundings"]:
        text = " ".join(grounding["text"].split())
        if grounding["regions"] == [k] and text and text not in texts:
            texts.append(text)
    return texts


def _named(row: dict[str, Any], j: int) -> str:
    """Region `j` as a text names it: `<region3>, a chair,`."""
    return f"<region{j}>, {with_article(row['regions'][j]['category'] or 'object')},"


PREPOSITIONS = frozenset({
    "on", "in", "at", "of", "by", "near", "under", "over", "above", "below", "behind", "beside",
    "next", "inside", "along", "against", "across", "around", "between", "with", "beneath",
    "atop", "onto", "into", "underneath", "outside",
})  # fmt: skip


def verb_phrase(predicate: str) -> str:
    """A triplet's predicate as a verb phrase: `on` -> `is on`, `sitting on` -> `is sitting on`,
    `has` stays `has`."""
    words = predicate.strip().lower().split()
    if words and (words[0] in PREPOSITIONS or words[0].endswith("ing")):
        return "is " + " ".join(words)
    return " ".join(words)


def region_relations(row: dict[str, Any], k: int) -> list[str]:
    """Region `k`'s relations as phrases from its side: `is on <region1>, a table` (it is the
    subject) or `<region0>, a man, is holding it` (it is the object)."""
    phrases = []
    for relation in row["relations"]:
        subject, obj = relation["subject"], relation["object"]
        verb = verb_phrase(relation["predicate"])
        if subject == k and obj != k:
            phrases.append(f"{verb} {_named(row, obj).rstrip(',')}")
        elif obj == k and subject != k:
            phrases.append(f"{_named(row, subject)} {verb} it")
    return phrases


def neighbours(row: dict[str, Any], k: int, most: int = 2) -> list[str]:
    """The nearest talkable regions with a category, as `<region3>, a chair, is to its left`."""
    box = row["regions"][k]["bbox"]
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    near = []
    for j, other in enumerate(row["regions"]):
        category = plain_category(other)
        if j == k or category is None or not is_talkable(row, j):
            continue
        b = other["bbox"]
        distance = ((b[0] + b[2]) / 2 - centre[0]) ** 2 + ((b[1] + b[3]) / 2 - centre[1]) ** 2
        near.append((distance, j, f"{_named(row, j)} is {direction(box, b)}"))
    return [phrase for _, _, phrase in sorted(near)[:most]]


def region_facts(row: dict[str, Any], k: int) -> dict[str, Any]:
    """Everything known about region `k` that a text about it may use."""
    region = row["regions"][k]
    width, height = row["width"], row["height"]
    others = sorted(
        {c for j, r in enumerate(row["regions"]) if j != k and (c := plain_category(r))}
    )
    return {
        "region": k,
        "category": plain_category(region),
        "attributes": [a for a in region["attributes"] if a != CROWD],
        "texts": region_texts(row, k),
        "position": position_words(region["bbox"], width, height),
        "size": size_words(region["bbox"], width, height),
        "relations": region_relations(row, k),
        "neighbours": neighbours(row, k),
        "other_categories": others,
        "region_count": len(row["regions"]),
    }
