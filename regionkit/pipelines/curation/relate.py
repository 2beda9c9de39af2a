"""Relation turns: how two regions relate, anchored on facts the sources or the boxes give.

Pairs come, in this order of preference, from Visual Genome triplets, Flickr30k captions that
mention two entities, gRefCOCO expressions that name several targets, and the boxes (a pair
clearly side by side or one above the other). For each of a few pairs a row gets:

- a relation-aware description, written by the generator, that must express the pair's facts
  (every triplet's predicate in some wording, no spatial word the boxes contradict);
- a question-answer turn read off the facts;
- a four-way multiple-choice question whose distractors are relations false for the pair
  (never a synonym or an implication of a true one), the correct letter placed by the row id,
  so letters are balanced across a dataset.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any, ClassVar

from regionkit.catalog.markup import malformed_markup, references
from regionkit.pipelines.curation.dialogue import qa_turn, rotated, stable_choice, with_article
from regionkit.pipelines.curation.facts import box_area, is_talkable, plain_category, verb_phrase
from regionkit.pipelines.curation.geometry import (
    DIRECTIONS,
    clear_direction,
    holds,
    spatial_claims,
)
from regionkit.pipelines.curation.predicates import distractors, expresses
from regionkit.pipelines.curation.text_checks import (
    absent_categories,
    artefacts,
    named_categories,
    word_count,
)
from regionkit.pipelines.llm.generate import Answered, Ask, GenerateStep, text_answer_schema
from regionkit.pipelines.llm.prompts import facts_text

DESCRIPTION_WORDS = (5, 150)
LETTERS = "ABCD"
KINDS = ("triplet", "co_mention", "group", "geometry")
"""Where a pair's facts come from, most preferred first."""


def detokenised(text: str) -> str:
    """A tokenised source text (Flickr30k's `Two young , White males .`) with its punctuation
    joined back to the words."""
    return re.sub(r"\s+([.,!?;:'])", r"\1", " ".join(text.split()))


def sentence(text: str) -> str:
    """A source text as a sentence, ending in a full stop."""
    text = detokenised(text)
    return text if text.endswith((".", "!", "?")) else text + "."


def _region(row: dict[str, Any], k: int, phrase: str | None) -> dict[str, Any]:
    """What the prompt says of region `k`, and how texts name it: the source's phrase for it
    when there is one (Flickr30k's `two young guys`; its categories are entity types such as
    `people`), else its category."""
    region = row["regions"][k]
    texts = [g["text"] for g in row["groundings"] if g["regions"] == [k]]
    category = plain_category(region) or "object"
    return {
        "name": detokenised(phrase).lower() if phrase else with_article(category),
        "category": category,
        "attributes": [a for a in region["attributes"] if a != "crowd"],
        "texts": texts[:3],
    }


def _talkable_pair(row: dict[str, Any], a: int, b: int) -> bool:
    return a != b and is_talkable(row, a) and is_talkable(row, b)


Pair = tuple[int, int, str, list[str], tuple[str | None, str | None]]
"""(a, b, kind, statements, the source's phrases naming a and b)."""


def relation_pairs(row: dict[str, Any]) -> list[Pair]:
    """Each pair the row gives facts about, once, most preferred kind first: statements are
    predicates (`triplet`), a caption (`co_mention`), an expression (`group`) or nothing
    (`geometry`)."""
    found: dict[tuple[int, int], tuple[str, list[str], tuple[str | None, str | None]]] = {}

    def add(
        a: int, b: int, kind: str, statement: str | None, phrases: tuple[str | None, ...] = ()
    ) -> None:
        if not _talkable_pair(row, a, b) or (b, a) in found:
            return
        names = (phrases[0], phrases[1]) if phrases else (None, None)
        entry = found.setdefault((a, b), (kind, [], names))
        if entry[0] == kind and statement and statement not in entry[1]:
            entry[1].append(statement)

    for relation in row["relations"]:
        add(relation["subject"], relation["object"], "triplet", relation["predicate"])
    grounded = [g for g in row["groundings"] if g["regions"]]
    for caption in row["captions"]:
        lowered = caption.lower()
        mentioned = [g for g in grounded if g["text"].lower() in lowered]
        for first, second in pairwise(mentioned):
            if not set(first["regions"]) & set(second["regions"]):
                phrases = (first["text"], second["text"])
                add(first["regions"][0], second["regions"][0], "co_mention", caption, phrases)
    for grounding in row["groundings"]:
        targets = sorted(set(grounding["regions"]))
        if len(targets) >= 2:
            add(targets[0], targets[1], "group", grounding["text"])
    boxes = [r["bbox"] for r in row["regions"]]
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            if clear_direction(boxes[a], boxes[b]) is not None:
                add(a, b, "geometry", None)
    pairs = [(a, b, kind, statements, names) for (a, b), (kind, statements, names) in found.items()]
    return sorted(pairs, key=lambda p: KINDS.index(p[2]))


def _named(k: int, facts: dict[str, Any]) -> str:
    return f"<region{k}>, {facts['name']},"


class RelateRegions(GenerateStep):
    """Writes each row's Relation dialogue (task `relation`).

    Args:
        generator: writes the relation-aware descriptions.
        per_row: most pairs per row.
    """

    name, version = "relate_regions", "1"
    prompt_id = "relate_regions.v1"
    schema: ClassVar[dict[str, Any]] = text_answer_schema("description")

    task = "relation"
    silent_code = "no_relation"
    silent_reason = "no pair of talkable regions with a relation, a shared text or a clear layout"

    def asks(self, row: dict[str, Any]) -> list[Ask]:
        chosen: list[Pair] = []
        pairs = relation_pairs(row)
        for kind in KINDS:  # the most preferred kinds first, rotated within each
            of_kind = [p for p in pairs if p[2] == kind]
            chosen += rotated(f"{row['id']}/pairs/{kind}", of_kind)
        categories = sorted({c for r in row["regions"] if (c := plain_category(r))})
        asks = []
        for a, b, kind, statements, (name_a, name_b) in chosen[: self.per_row]:
            boxes = row["regions"][a]["bbox"], row["regions"][b]["bbox"]
            if kind == "co_mention":
                statements = [sentence(s) for s in statements]
            facts = {
                "pair": [a, b],
                "kind": kind,
                "statements": statements,
                "subject": _region(row, a, name_a),
                "object": _region(row, b, name_b),
                "direction": clear_direction(*boxes),
                "boxes": [list(box) for box in boxes],
                "image_categories": categories,
            }
            asks.append(Ask(f"regions {a} and {b}", facts))
        return asks

    def must_express(self, facts: dict[str, Any]) -> list[str]:
        """The facts a description of the pair must carry, as sentences."""
        a, b = facts["pair"]
        subject = _named(a, facts["subject"])
        obj = _named(b, facts["object"]).rstrip(",")
        lines = []
        if facts["kind"] == "triplet":
            lines += [f"{subject} {verb_phrase(p)} {obj}." for p in facts["statements"]]
        elif facts["kind"] == "co_mention":
            lines += [f"{subject} and {obj}, appear together. {facts['statements'][0]}"]
        elif facts["kind"] == "group":
            lines += [f"Together, <region{a}> and <region{b}> are {facts['statements'][0]}."]
        if facts["direction"] and facts["kind"] == "geometry":
            lines.append(f"{subject} is {facts['direction']} {obj}.")
        elif facts["direction"]:
            lines.append(f"<region{a}> is {facts['direction']} <region{b}>.")
        return lines

    def prompt_fields(self, ask: Ask) -> dict[str, str]:
        facts = ask.facts
        a, b = facts["pair"]
        return {
            "a": str(a),
            "b": str(b),
            "subject": facts_text(facts["subject"]),
            "object": facts_text(facts["object"]),
            "must": "\n".join(self.must_express(facts)),
        }

    def template(self, ask: Ask) -> dict[str, Any]:
        facts = ask.facts
        sentences = self.must_express(facts)
        a, b = facts["pair"]
        ratio = box_area(facts["boxes"][0]) / max(box_area(facts["boxes"][1]), 1e-9)
        if ratio >= 2 or ratio <= 0.5:
            size = "larger" if ratio >= 2 else "smaller"
            sentences.append(f"<region{a}> looks much {size} than <region{b}>.")
        for end, k in (("subject", facts["pair"][0]), ("object", facts["pair"][1])):
            attributes = facts[end]["attributes"][:3]
            if attributes:
                sentences.append(f"<region{k}> looks {', '.join(attributes)}.")
        return {"description": " ".join(sentences)}

    def check(self, ask: Ask, value: dict[str, Any]) -> list[str]:
        text = value.get("description")
        if not isinstance(text, str) or not text.strip():
            return ["'description' must be a non-empty string"]
        facts = ask.facts
        a, b = facts["pair"]
        problems = artefacts(text)
        words = word_count(text)
        if not DESCRIPTION_WORDS[0] <= words <= DESCRIPTION_WORDS[1]:
            problems.append(f"{words} words, not {DESCRIPTION_WORDS[0]}-{DESCRIPTION_WORDS[1]}")
        problems += [f"{tag!r} is not a region tag" for tag in malformed_markup(text)]
        tags = {k for kind, k in references(text) if kind == "region"}
        if not {a, b} <= tags:
            problems.append(f"it must name both <region{a}> and <region{b}>")
        if tags - {a, b} or any(kind != "region" for kind, _ in references(text)):
            problems.append(f"it may use only the tags <region{a}> and <region{b}>")
        if facts["kind"] == "triplet":
            problems += [
                f"it does not say that <region{a}> {verb_phrase(p)} <region{b}>"
                for p in facts["statements"]
                if not expresses(text, p)
            ]
        boxes = {a: facts["boxes"][0], b: facts["boxes"][1]}
        for x, words_, y in spatial_claims(text):
            if {x, y} == {a, b} and not holds(boxes[x], boxes[y], words_):
                problems.append(f"<region{x}> is not {words_} <region{y}>")
        known = named_categories(" ".join(facts["image_categories"]))
        known |= named_categories(" ".join(facts["statements"]))
        absent = absent_categories(text, known)
        if absent:
            problems.append(f"it names {absent}, which the image is not known to hold")
        return problems

    def turns(self, row: dict[str, Any], answered: Answered) -> list[dict[str, str]]:
        turns: list[dict[str, str]] = []
        for facts, value in answered:
            a, b = facts["pair"]
            turns += qa_turn(
                f"Describe <region{a}> and how it relates to <region{b}>.",
                value["description"].strip(),
            )
            turns += _question_answer(facts)
            turns += _multiple_choice(f"{row['id']}/mcq{a}-{b}", facts)
        return turns


def _question_answer(facts: dict[str, Any]) -> list[dict[str, str]]:
    """A question read off the pair's facts, and its answer."""
    a, b = facts["pair"]
    kind, statements = facts["kind"], facts["statements"]
    if kind == "triplet":
        return qa_turn(
            f"How is <region{a}> related to <region{b}>?",
            f"<region{a}> {verb_phrase(statements[0])} <region{b}>.",
        )
    if kind == "co_mention":
        return qa_turn(f"What are <region{a}> and <region{b}> doing here?", statements[0])
    if kind == "group":
        return qa_turn(
            f"Which expression refers to <region{a}> and <region{b}> together?", statements[0]
        )
    return qa_turn(
        f"Where is <region{a}> relative to <region{b}>?",
        f"<region{a}> is {facts['direction']} <region{b}>.",
    )


def _multiple_choice(seed: str, facts: dict[str, Any]) -> list[dict[str, str]]:
    """Four options, one true; none when the pair has no relation with three false ones."""
    a, b = facts["pair"]
    if facts["kind"] == "triplet":
        true = verb_phrase(facts["statements"][0])
        false = [verb_phrase(p) for p in rotated(seed, distractors(facts["statements"]))]
    elif facts["direction"]:
        true = f"is {facts['direction']}"
        false = [
            f"is {d}" for d in rotated(seed, [d for d in DIRECTIONS if d != facts["direction"]])
        ]
    else:
        return []
    if len(false) < 3:
        return []
    options = false[:3]
    correct = stable_choice(seed, 4)
    options.insert(correct, true)
    lines = "\n".join(
        f"{letter}. <region{a}> {option} <region{b}>"
        for letter, option in zip(LETTERS, options, strict=True)
    )
    question = f"Which is true?\n{lines}\nAnswer with the letter."
    return qa_turn(question, LETTERS[correct])
