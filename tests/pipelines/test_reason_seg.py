"""The MUSE-style step: goal questions whose answers mark every serving instance exactly once,
only where the source annotates every instance, and no-target questions that are truly so."""

from __future__ import annotations

from typing import Any

from regionkit.builders.base import Built
from regionkit.catalog.records import make_region, make_row
from regionkit.pipelines.curation.quality import row_problem
from regionkit.pipelines.curation.reason_seg import GOALS, ReasonSegmentation
from regionkit.pipelines.llm.generate import TemplateGenerator

MASK = {"size": [300, 400], "counts": "PPYo1"}


def _row(source: str = "coco", key: str = "1", extra: list[dict] | None = None) -> dict[str, Any]:
    regions = [
        make_region("1", [10, 10, 100, 100], MASK, "chair"),
        make_region("2", [150, 10, 250, 100], MASK, "dog"),
        make_region("3", [280, 10, 390, 100], MASK, "couch"),
        make_region("4", [10, 150, 100, 290], MASK, "dog"),
        *(extra or []),
    ]
    return make_row(
        source=source,
        split="train",
        native_key=key,
        image_path="/x.jpg",
        width=400,
        height=300,
        builder=source,
        builder_version="1",
        source_files=[],
        regions=regions,
    )


def test_the_template_marks_every_instance_that_serves_the_goal_once():
    step = ReasonSegmentation(TemplateGenerator())
    (ask,) = step.asks(_row())
    value = step.template(ask)
    assert value["question"] in {g.question for g in GOALS}
    expected = {
        "What could someone sit on here?": [0, 2],
        "Which animals here might live in a family's home?": [1, 3],
    }
    assert value["targets"] == expected[value["question"]]
    assert step.check(ask, value) == []


def test_a_category_with_a_crowd_or_box_only_instance_is_never_answered_whole():
    crowd = make_region("5", [100, 150, 390, 290], MASK, "chair", ["crowd"])
    (ask,) = ReasonSegmentation(TemplateGenerator()).asks(_row(extra=[crowd]))
    assert "chair" not in ask.facts["categories"] and 4 not in ask.facts["candidates"]
    box_only = make_region("5", [100, 150, 390, 290], None, "dog")
    (ask,) = ReasonSegmentation(TemplateGenerator()).asks(_row(extra=[box_only]))
    assert "dog" not in ask.facts["categories"]


def test_invalid_answers_are_named():
    step = ReasonSegmentation(TemplateGenerator())
    (ask,) = step.asks(_row())
    good = {
        "question": "What could someone sit on here?",
        "answer": "<seg0> and <seg2>.",
        "targets": [0, 2],
    }
    assert step.check(ask, good) == []

    def problems(**change: Any) -> list[str]:
        return step.check(ask, {**good, **change})

    assert problems(answer="<seg0>, <seg0> and <seg2>.") == [
        "the answer marks [0, 0, 2], not each target in [0, 2] once"
    ]
    assert problems(targets=[0], answer="<seg0>.") == [
        "'targets' must be at least 2 distinct instances"
    ]
    assert "targets [7] are not among the listed objects" in problems(
        targets=[0, 7], answer="<seg0> <seg7>"
    )
    assert problems(question="Which chairs could someone sit on?") == [
        "the question names the targets' categories ['chair']"
    ]
    assert (
        problems(answer="<region0> and <seg2>.", targets=[2, 0])[-1]
        == "the answer may mark objects only as <segK>"
    )


def test_only_exhaustive_sources_get_goal_and_no_target_questions():
    step = ReasonSegmentation(TemplateGenerator())
    row = _row(source="grefcoco")
    row["groundings"] = [
        {"text": "both dogs", "regions": [1, 3]},
        {"text": "the chair", "regions": [0]},
    ]
    assert step.asks(row) == []
    (built,) = step.process([Built(row, {"row": 1})]).rows
    assert built.row["messages"] == [
        {"role": "user", "content": "Segment both dogs."},
        {"role": "assistant", "content": "<seg1> and <seg3>."},
    ]


def test_a_fifth_of_rows_ask_for_what_is_not_there():
    step = ReasonSegmentation(TemplateGenerator())
    rejected = 0
    for n in range(200):
        (built,) = step.process([Built(_row(key=str(n)), {"row": 1})]).rows
        assert row_problem(built.row, 1, 60, min_targets=2) is None
        for question, answer in zip(
            built.row["messages"][::2], built.row["messages"][1::2], strict=True
        ):
            if answer["content"] == "<rej>":
                rejected += 1
                goal = next(g for g in GOALS if g.question == question["content"])
                assert not {"chair", "dog", "couch"} & set(goal.categories)
    assert 25 <= rejected <= 60


def test_an_answer_marking_one_mask_fails_a_multi_target_recipe():
    row = _row()
    row["messages"] = [
        {"role": "user", "content": "What could someone sit on here?"},
        {"role": "assistant", "content": "<seg0>."},
    ]
    assert row_problem(row, 1, 60) is None
    assert row_problem(row, 1, 60, min_targets=2) == (
        "too_few_targets",
        "messages[1]: 1 mask(s), not at least 2",
    )
