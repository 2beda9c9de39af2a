"""Each rule of the validator fires on the field it names, and a sound row passes."""

from __future__ import annotations

import copy

import pytest

from regionkit.catalog.masks import boxes_to_rle
from regionkit.catalog.records import make_region, make_row
from regionkit.catalog.validate import validate_row


@pytest.fixture
def row() -> dict:
    return make_row(
        source="coco",
        split="val2017",
        native_key="1",
        image_path="/images/1.jpg",
        width=100,
        height=50,
        builder="coco",
        builder_version="1.0",
        source_files=["x.json"],
        regions=[
            make_region("1", [0, 0, 10, 10], boxes_to_rle([[0, 0, 10, 10]], 50, 100), "cat"),
            make_region("2", [50, 20, 100, 50]),
        ],
        groundings=[{"text": "a cat", "regions": [0]}],
        relations=[{"subject": 0, "predicate": "left of", "object": 1}],
        messages=[
            {"role": "user", "content": "<region1>?"},
            {"role": "assistant", "content": "<seg0>"},
        ],
    )


def test_a_sound_row_has_no_problems(row):
    assert validate_row(row) == []


def test_a_box_within_the_tolerance_is_accepted(row):
    row["regions"][1]["bbox"] = [50, 20, 101.5, 51.5]
    assert validate_row(row) == []


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r.update(id="coco:train2017:1"), "id:"),
        (lambda r: r.update(task="Refer Seg"), "task:"),
        (lambda r: r.update(width=0), "width, height:"),
        (lambda r: r.update(image={"path": None, "bytes": None}), "image:"),
        (lambda r: r["regions"][1].update(id="1"), "regions[1].id:"),
        (lambda r: r["regions"][1].update(bbox=[50, 20, 110, 50]), "regions[1].bbox:"),
        (lambda r: r["regions"][1].update(bbox=[60, 20, 50, 50]), "regions[1].bbox:"),
        (lambda r: r["regions"][1].update(bbox=[0, 0, float("inf"), 1]), "regions[1].bbox:"),
        (
            lambda r: r["regions"][0].update(mask=boxes_to_rle([[0, 0, 1, 1]], 100, 50)),
            "regions[0].mask:",
        ),
        (lambda r: r["groundings"][0].update(regions=[0, 2]), "groundings[0].regions:"),
        (lambda r: r["relations"][0].update(object=5), "relations[0].object:"),
        (lambda r: r["messages"][0].update(role="system"), "messages[0].role:"),
        (lambda r: r["messages"][1].update(content="<seg2>"), "messages[1].content:"),
        (lambda r: r["messages"][0].update(content="<region7>"), "messages[0].content:"),
    ],
)
def test_each_problem_names_its_field(row, edit, field):
    broken = copy.deepcopy(row)
    edit(broken)
    problems = validate_row(broken)
    assert len(problems) == 1, problems
    assert problems[0].startswith(field)
