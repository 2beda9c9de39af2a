"""Quality checks every recipe's output passes; a row failing one goes to quarantine under the
check's name, with the turn and the text at fault.

- `markup_malformed`: tag-like text that is not `<regionK>`, `<segK>` or `<rej>`;
- `markup_unresolved`: an index past the row's regions;
- `seg_without_mask`: `<segK>` for a region that has no mask to output;
- `seg_repeated`: an answer that marks one region's mask twice;
- `too_few_targets`: an answer marking masks that marks fewer than the recipe asks (MUSE: 2);
- `text_artefact`: boxes, annotations, coordinates, label artefacts or empty slots in any turn;
- `absent_category`: an answer names a COCO category the image is not known to hold;
- `answer_length`: an answer's words outside the task's bounds (markup-only answers exempt);
- `no_turns`: a row with no dialogue, or one that does not alternate user, assistant;
- `duplicate_turn`: the same question with the same answer twice in a row (markup indexes
  the row's own regions, so the same words in another row are another sample);
- `relation_self`: a relation whose subject is its object;
- `mcq_invalid`: a multiple-choice question whose options repeat, or whose answer is not
  exactly one of its letters.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from regionkit.builders.base import Built, Rejected
from regionkit.catalog.markup import malformed_markup, references
from regionkit.pipelines.curation.text_checks import (
    absent_categories,
    artefacts,
    known_categories,
    word_count,
)
from regionkit.pipelines.step import Step, StepResult


def row_problem(
    row: dict[str, Any], min_words: int, max_words: int, min_targets: int = 1
) -> tuple[str, str] | None:
    """The first (check, what is wrong) of `row`, or None when it passes every check."""
    messages = row["messages"]
    if not messages:
        return "no_turns", "the row has no dialogue"
    roles = [m["role"] for m in messages]
    if roles[0] != "user" or any(a == b for a, b in pairwise(roles)):
        return "no_turns", f"turns do not alternate user, assistant: {roles}"
    pairs = [
        (m["content"], n["content"]) for m, n in zip(messages[::2], messages[1::2], strict=False)
    ]
    if len(set(pairs)) != len(pairs):
        first = next(p for p in pairs if pairs.count(p) > 1)
        return "duplicate_turn", f"{first[0]!r} -> {first[1]!r} appears twice"
    for i, relation in enumerate(row["relations"]):
        if relation["subject"] == relation["object"]:
            return (
                "relation_self",
                f"relations[{i}]: region {relation['subject']} relates to itself",
            )
    regions = row["regions"]
    known = known_categories(row)
    for i in range(0, len(messages) - 1, 2):
        problem = mcq_problem(messages[i]["content"], messages[i + 1]["content"])
        if problem:
            return "mcq_invalid", f"messages[{i}]: {problem}"
    for i, message in enumerate(messages):
        text, where = message["content"], f"messages[{i}]"
        bad = malformed_markup(text)
        if bad:
            return "markup_malformed", f"{where}: {bad[0]!r} is not markup"
        segs = [k for kind, k in references(text) if kind == "seg"]
        if len(segs) != len(set(segs)):
            return "seg_repeated", f"{where}: marks a mask twice in {text!r}"
        if segs and len(segs) < min_targets:
            return "too_few_targets", f"{where}: {len(segs)} mask(s), not at least {min_targets}"
        for kind, k in references(text):
            if k >= len(regions):
                return "markup_unresolved", f"{where}: <{kind}{k}> past the {len(regions)} regions"
            if kind == "seg" and regions[k]["mask"] is None:
                return "seg_without_mask", f"{where}: <seg{k}> but region {k} has no mask"
        found = artefacts(text)
        if found:
            return "text_artefact", f"{where}: {found[0]} in {text!r}"
        if message["role"] != "assistant":
            continue
        absent = absent_categories(text, known)
        if absent:
            return "absent_category", f"{where}: names {absent} but the image holds none"
        words = word_count(text)
        if words and not min_words <= words <= max_words:
            return "answer_length", f"{where}: {words} words, not {min_words}-{max_words}"
    return None


_OPTION = re.compile(r"^([A-Z])\. (.+)$", re.M)


def mcq_problem(question: str, answer: str) -> str | None:
    """What is wrong with a multiple-choice turn (options `A. ...` on their own lines), or
    None when it is sound or not a multiple-choice question."""
    options = _OPTION.findall(question)
    if len(options) < 2:
        return None
    letters = [letter for letter, _ in options]
    texts = [" ".join(text.lower().split()) for _, text in options]
    if len(set(texts)) != len(texts):
        return "two options say the same"
    if letters != [chr(ord("A") + i) for i in range(len(letters))]:
        return f"options are lettered {letters}"
    if answer.strip() not in letters:
        return f"the answer {answer.strip()!r} is not one of the letters {letters}"
    return None


class QualityChecks(Step):
    """Rows that fail a check go to quarantine under the check's name.

    Args:
        min_words, max_words: bounds on the words of an answer that has words.
        min_targets: fewest masks an answer that marks masks may mark.
    """

    name, version = "quality", "1"

    def __init__(self, min_words: int = 1, max_words: int = 250, min_targets: int = 1) -> None:
        self.min_words = min_words
        self.max_words = max_words
        self.min_targets = min_targets

    def params(self) -> dict[str, Any]:
        return {
            "min_words": self.min_words,
            "max_words": self.max_words,
            "min_targets": self.min_targets,
        }

    def process(self, rows: list[Built]) -> StepResult:
        result = StepResult([])
        for built in rows:
            problem = row_problem(built.row, self.min_words, self.max_words, self.min_targets)
            if problem is None:
                result.rows.append(built)
            else:
                code, reason = problem
                result.rejected.append(Rejected(built.row["id"], code, reason, built.units))
        return result
