"""MUSE-style turns: questions whose answers segment several instances, each exactly once.

Only sources that annotate every instance of their categories (COCO) may be asked "which
things here ...": an answer drawn from a federated or partial annotation would leave true
targets out. For such a row the generator writes one goal question that names no target's
category (the LLM chooses the goal; the template takes one from a table of affordances that
two or more of the image's instances share), then "all the <category>" turns, and, for a
fifth of the rows, a goal nothing in the image serves, answered `<rej>`. gRefCOCO's texts with
several targets become turns of their own.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from regionkit.catalog.markup import REJECT, malformed_markup, references, seg
from regionkit.pipelines.curation.dialogue import listed, pick, qa_turn, rotated, stable_choice
from regionkit.pipelines.curation.facts import (
    can_target,
    plain_category,
    position_words,
    size_words,
)
from regionkit.pipelines.curation.text_checks import artefacts, named_categories, word_count
from regionkit.pipelines.llm.generate import Answered, Ask, GenerateStep


class Goal(NamedTuple):
    """A goal a question names instead of categories."""

    question: str
    lead: str  # the answer's words before the marked instances
    categories: tuple[str, ...]  # COCO categories whose instances serve it


EXHAUSTIVE_SOURCES = frozenset({"coco"})
"""Sources that annotate every instance of their categories in an image."""

GOALS = (
    Goal(
        "What could someone sit on here?",
        "You could sit on",
        ("chair", "couch", "bench", "bed", "toilet"),
    ),
    Goal(
        "What here could take passengers from one place to another?",
        "These carry passengers:",
        ("car", "bus", "train", "truck", "motorcycle", "bicycle", "airplane", "boat"),
    ),
    Goal(
        "What here could someone have for a meal?",
        "These can be eaten:",
        (
            "banana",
            "apple",
            "sandwich",
            "orange",
            "broccoli",
            "carrot",
            "hot dog",
            "pizza",
            "donut",
            "cake",
        ),
    ),
    Goal(
        "What could someone drink from here?",
        "You could drink from",
        ("cup", "bottle", "wine glass"),
    ),
    Goal(
        "Which animals here might live in a family's home?",
        "These could be pets:",
        ("dog", "cat", "bird"),
    ),
    Goal(
        "Which animals here would you expect on a farm?",
        "These belong on a farm:",
        ("horse", "sheep", "cow"),
    ),
    Goal(
        "What here would someone use to carry their belongings?",
        "These carry belongings:",
        ("backpack", "handbag", "suitcase"),
    ),
    Goal(
        "What here is meant for sport or play?",
        "These are for sport or play:",
        (
            "frisbee",
            "skis",
            "snowboard",
            "sports ball",
            "kite",
            "baseball bat",
            "baseball glove",
            "skateboard",
            "surfboard",
            "tennis racket",
        ),
    ),
    Goal(
        "What here needs electricity to work?",
        "These run on electricity:",
        (
            "tv",
            "laptop",
            "mouse",
            "remote",
            "keyboard",
            "cell phone",
            "microwave",
            "oven",
            "toaster",
            "refrigerator",
            "hair drier",
        ),
    ),
    Goal(
        "What here helps someone eat a meal?",
        "These help with eating:",
        ("fork", "knife", "spoon", "bowl", "dining table"),
    ),
    Goal(
        "Who here could someone ask for directions?",
        "You could ask",
        ("person",),
    ),
)
"""Goals two or more instances of a COCO image may serve."""

IRREGULAR_PLURALS = {
    "person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis",
    "scissors": "scissors", "bus": "buses", "wine glass": "wine glasses", "couch": "couches",
    "bench": "benches", "sandwich": "sandwiches", "tennis racket": "tennis rackets",
}  # fmt: skip
ANSWER_WORDS = 60
MIN_TARGETS = 2
NO_TARGET_SHARE = 5
"""One row in this many gets a goal nothing in the image serves."""


def plural(category: str) -> str:
    return IRREGULAR_PLURALS.get(category, category + "s")


def _instances(row: dict[str, Any]) -> dict[str, list[int]]:
    """Each category's instances, when every one of them can be a target (talkable, masked):
    a category with a crowd or a sliver among its instances cannot be answered whole."""
    by_category: dict[str, list[int]] = {}
    spoiled = set()
    for k, region in enumerate(row["regions"]):
        category = plain_category(region)
        if category is None:
            continue
        by_category.setdefault(category, []).append(k)
        if not can_target(row, k):
            spoiled.add(category)
    return {c: ks for c, ks in by_category.items() if c not in spoiled}


class ReasonSegmentation(GenerateStep):
    """Writes each row's MUSE-style dialogue (task `reason_seg`).

    Args:
        generator: writes the goal questions.
    """

    name, version = "reason_seg", "1"
    prompt_id = "muse_question.v1"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "answer": {"type": "string"},
            "targets": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["question", "answer", "targets"],
        "additionalProperties": False,
    }
    task = "reason_seg"
    silent_code = "no_question"
    silent_reason = "no goal, no category or text with two or more whole targets"

    def __init__(self, generator: Any) -> None:
        super().__init__(generator, per_row=1)

    def asks(self, row: dict[str, Any]) -> list[Ask]:
        if row["source"] not in EXHAUSTIVE_SOURCES:
            return []
        instances = _instances(row)
        candidates = sorted(k for ks in instances.values() for k in ks)
        if len(candidates) < MIN_TARGETS:
            return []
        width, height = row["width"], row["height"]
        listed = []
        for k in candidates:
            box = row["regions"][k]["bbox"]
            where = f"{position_words(box, width, height)}, {size_words(box, width, height)}"
            listed.append(f"<region{k}>: {plain_category(row['regions'][k])} ({where})")
        facts = {
            "instances": listed,
            "candidates": candidates,
            "categories": {c: ks for c, ks in sorted(instances.items())},
            "row": row["id"],
        }
        return [Ask("goal question", facts)]

    def prompt_fields(self, ask: Ask) -> dict[str, str]:
        return {"instances": "\n".join(ask.facts["instances"])}

    def template(self, ask: Ask) -> dict[str, Any]:
        categories = ask.facts["categories"]
        served = []
        for goal in GOALS:
            targets = sorted(k for c in goal.categories for k in categories.get(c, []))
            if len(targets) >= MIN_TARGETS:
                served.append((goal, targets))
        if not served:
            return {"question": "", "answer": "", "targets": []}
        goal, targets = pick(f"{ask.facts['row']}/goal", served)
        answer = f"{goal.lead} {listed([seg(k) for k in targets])}."
        return {"question": goal.question, "answer": answer, "targets": targets}

    def check(self, ask: Ask, value: dict[str, Any]) -> list[str]:
        question, answer, targets = value.get("question"), value.get("answer"), value.get("targets")
        if not question or not isinstance(question, str):
            return ["no goal in the table is served by two or more of the image's instances"]
        if not isinstance(answer, str) or not isinstance(targets, list):
            return ["'answer' must be a string and 'targets' a list"]
        problems = artefacts(question) + artefacts(answer)
        problems += [f"{tag!r} is not markup" for tag in malformed_markup(question + answer)]
        if references(question):
            problems.append("the question must not hold region tags")
        if len(set(targets)) != len(targets) or len(set(targets)) < MIN_TARGETS:
            problems.append(f"'targets' must be at least {MIN_TARGETS} distinct instances")
        unknown = sorted(set(targets) - set(ask.facts["candidates"]))
        if unknown:
            problems.append(f"targets {unknown} are not among the listed objects")
        tagged = [k for kind, k in references(answer) if kind == "seg"]
        if sorted(tagged) != sorted(set(targets)):
            problems.append(f"the answer marks {tagged}, not each target in {targets} once")
        if any(kind != "seg" for kind, _ in references(answer)):
            problems.append("the answer may mark objects only as <segK>")
        named = named_categories(question)
        region_categories = {
            c for c, ks in ask.facts["categories"].items() if set(ks) & set(targets)
        }
        spoken = sorted(named & named_categories(" ".join(region_categories)))
        if spoken:
            problems.append(f"the question names the targets' categories {spoken}")
        if word_count(answer) > ANSWER_WORDS:
            problems.append(f"the answer has more than {ANSWER_WORDS} words")
        return problems

    def turns(self, row: dict[str, Any], answered: Answered) -> list[dict[str, str]]:
        turns: list[dict[str, str]] = []
        for _, value in answered:
            turns += qa_turn(value["question"].strip(), value["answer"].strip())
        if row["source"] in EXHAUSTIVE_SOURCES:
            turns += self._all_of_a_category(row)
            turns += self._no_target(row)
        several = [
            (g["text"].strip(), sorted(set(g["regions"])))
            for g in row["groundings"]
            if len(set(g["regions"])) >= MIN_TARGETS
            and all(can_target(row, k) for k in g["regions"])
        ]
        for text, targets in rotated(f"{row['id']}/texts", several)[:2]:
            turns += qa_turn(f"Segment {text}.", listed([seg(k) for k in targets]) + ".")
        return turns

    def _all_of_a_category(self, row: dict[str, Any]) -> list[dict[str, str]]:
        whole = sorted((c, ks) for c, ks in _instances(row).items() if len(ks) >= MIN_TARGETS)
        if not whole:
            return []
        category, targets = pick(f"{row['id']}/all", whole)
        question = f"Segment all the {plural(category)} in the image."
        return qa_turn(question, listed([seg(k) for k in targets]) + ".")

    def _no_target(self, row: dict[str, Any]) -> list[dict[str, str]]:
        if stable_choice(f"{row['id']}/none", NO_TARGET_SHARE) != 0:
            return []
        present = {plain_category(r) for r in row["regions"]}
        absent = [goal.question for goal in GOALS if not present & set(goal.categories)]
        return qa_turn(pick(f"{row['id']}/absent", absent), REJECT) if absent else []
