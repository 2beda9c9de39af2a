"""The Relation step: pairs from each kind of fact, checks that catch a wrong relation or a
contradicted layout, and multiple-choice questions with one true option and balanced letters."""

from __future__ import annotations

from collections import Counter
from typing import Any

from regionkit.builders.base import Built
from regionkit.catalog.records import make_region, make_row
from regionkit.pipelines.curation.geometry import clear_direction, spatial_claims
from regionkit.pipelines.curation.predicates import distractors, expresses, meaning
from regionkit.pipelines.curation.quality import mcq_problem, row_problem
from regionkit.pipelines.curation.relate import RelateRegions, relation_pairs
from regionkit.pipelines.llm.generate import TemplateGenerator


def _row(key: str = "1", **fields: Any) -> dict[str, Any]:
    regions = [
        make_region("1", [10, 100, 110, 200], None, "man"),  # left
        make_region("2", [200, 110, 300, 190], None, "horse"),  # right, same height
        make_region("3", [120, 0, 180, 60], None, "kite"),  # top, between
    ]
    return make_row(
        source="vg",
        split="train",
        native_key=key,
        image_path="/x.jpg",
        width=400,
        height=300,
        builder="vg",
        builder_version="1",
        source_files=[],
        regions=regions,
        **fields,
    )


def test_the_layout_is_read_on_the_right_axes():
    man, horse, kite = (r["bbox"] for r in _row()["regions"])
    assert clear_direction(man, horse) == "to the left of"
    assert clear_direction(horse, man) == "to the right of"
    assert clear_direction([0, 0, 50, 50], [10, 100, 40, 150]) == "above"  # smaller y is above
    assert clear_direction(man, kite) is None  # diagonal: more than one word could be said
    assert spatial_claims("<region0>, a man, stands to the left of <region1>.") == [
        (0, "to the left of", 1)
    ]
    assert spatial_claims("<region2> flies over <region0>. <region1> rests.") == [(2, "above", 0)]


def test_pairs_come_from_triplets_captions_groups_and_layout_in_that_order():
    row = _row(
        relations=[{"subject": 0, "predicate": "riding", "object": 1}],
        groundings=[
            {"text": "a man", "regions": [0]},
            {"text": "a kite", "regions": [2]},
            {"text": "man and kite", "regions": [0, 2]},
        ],
        captions=["A man flies a kite ."],
    )
    pairs = relation_pairs(row)
    assert [(a, b, kind) for a, b, kind, _, _ in pairs] == [(0, 1, "triplet"), (0, 2, "co_mention")]
    assert pairs[0][3] == ["riding"] and pairs[1][3] == ["A man flies a kite ."]
    assert pairs[1][4] == ("a man", "a kite")


def test_a_description_must_carry_the_relation_and_agree_with_the_boxes():
    row = _row(relations=[{"subject": 0, "predicate": "riding", "object": 1}])
    step = RelateRegions(TemplateGenerator(), per_row=1)
    (ask,) = step.asks(row)
    good = "<region0>, a man, is riding <region1>, a horse, to the left of <region1>."
    assert step.check(ask, {"description": good}) == []
    assert step.check(ask, {"description": good.replace("riding", "rides on")}) == []  # synonym
    wrong = step.check(ask, {"description": good.replace("riding", "feeding")})
    assert wrong == ["it does not say that <region0> is riding <region1>"]
    flipped = step.check(ask, {"description": good.replace("left", "right")})
    assert flipped == ["<region0> is not to the right of <region1>"]
    other = step.check(ask, {"description": good + " <region2> is far away."})
    assert other == ["it may use only the tags <region0> and <region1>"]
    assert step.check(ask, step.template(ask)) == []


def test_multiple_choice_has_one_true_option_and_balanced_letters():
    step = RelateRegions(TemplateGenerator(), per_row=1)
    letters: Counter[str] = Counter()
    for n in range(200):
        relations = [{"subject": 0, "predicate": "wearing", "object": 1}]
        (built,) = step.process([Built(_row(str(n), relations=relations), {"row": 1})]).rows
        question, answer = (
            built.row["messages"][-2]["content"],
            built.row["messages"][-1]["content"],
        )
        assert mcq_problem(question, answer) is None
        options = dict(line.split(". ", 1) for line in question.splitlines()[1:5])
        assert options[answer] == "<region0> is wearing <region1>"
        false = [o.split()[2] for letter, o in options.items() if letter != answer]
        assert "has" not in false  # implied by wearing: never offered as false
        assert row_problem(built.row, 1, 150) is None
        letters[answer] += 1
    assert set(letters) == set("ABCD") and min(letters.values()) >= 30, letters


def test_distractors_are_neither_synonyms_nor_implied_relations():
    assert meaning("sitting on") == meaning("on") == "on"
    assert "on" not in distractors(["riding"])
    assert not {meaning(p) for p in distractors(["standing on"])} & {"on", "riding"}
    assert expresses("A man, riding on a horse.", "riding")
    assert not expresses("A man beside a horse.", "riding")


def test_a_bad_multiple_choice_turn_is_named():
    question = "Which is true?\nA. x is on y\nB. x has y\nC. x is on y\nD. x eats y"
    assert mcq_problem(question, "A") == "two options say the same"
    question = "Which is true?\nA. x is on y\nB. x has y"
    assert mcq_problem(question, "C") == "the answer 'C' is not one of the letters ['A', 'B']"
    assert mcq_problem("What is <region0>?", "a man") is None
