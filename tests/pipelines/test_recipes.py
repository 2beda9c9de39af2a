"""Recipes from the demo sources with the template generator, and the checks they are made of.

The demo samples are the sources' real formats with their quirks; built, then run through each
recipe, every row must pass the record validator and the quality checks, a rerun must write
the same bytes, and no training row may show an image an evaluation split shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from regionkit.builders.base import Built
from regionkit.catalog.records import make_region, make_row
from regionkit.catalog.validate import validate_row
from regionkit.cli import main
from regionkit.pipelines.build import BuildOptions, run_build
from regionkit.pipelines.curation.describe import DescribeRegions, colour_contradiction
from regionkit.pipelines.curation.facts import (
    position_words,
    region_facts,
    region_relations,
    size_words,
)
from regionkit.pipelines.curation.hygiene import (
    KeepEvaluationImagesOut,
    evaluation_keys,
    is_evaluation_split,
)
from regionkit.pipelines.curation.quality import row_problem
from regionkit.pipelines.curation.seed_turns import SeedTurns
from regionkit.pipelines.demo import demo_builder
from regionkit.pipelines.llm.generate import TemplateGenerator

SOURCES = ("refcoco", "grefcoco", "vg", "flickr30k", "coco")


@pytest.fixture(scope="session")
def demo_datasets(ray_cluster, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("demo")
    built = []
    for source in SOURCES:
        builder = demo_builder(source, root / "sources" / source, seed=0)
        run_build(builder, BuildOptions(root / source, items_per_shard=8, progress=False))
        built.append(root / source)
    return built


def _rows(dataset: Path) -> list[dict[str, Any]]:
    return [
        row
        for f in sorted((dataset / "data").glob("*.parquet"))
        for row in pq.read_table(f).to_pylist()
    ]


def _data_files(dataset: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((dataset / "data").glob("*.parquet"))}


@pytest.mark.parametrize(
    ("recipe", "task", "max_words"),
    [
        ("seed", "seed", 20),
        ("fine_grained", "detailed_caption", 250),
        ("relation", "relation", 150),
        ("muse_style", "reason_seg", 60),
    ],
)
def test_a_recipe_builds_valid_checked_rows_and_keeps_evaluation_images_out(
    demo_datasets, tmp_path, recipe, task, max_words
):
    command = ["recipe", recipe, "--no-progress"]
    for dataset in demo_datasets:
        command += ["--input", str(dataset)]
    assert main([*command, "--out", str(tmp_path / "a")]) == 0
    rows = _rows(tmp_path / "a")
    assert len(rows) > 20
    for row in rows:
        assert validate_row(row) == [], row["id"]
        assert row_problem(row, 1, max_words) is None, row["id"]
        assert row["task"] == task and row["messages"]
        assert row["provenance"]["generator"] == "template"

    held_out = {
        key
        for dataset in demo_datasets
        for row in _rows(dataset)
        if row["split"].startswith(("val", "test"))
        for key in row["image_keys"]
    }
    assert held_out and set(evaluation_keys(demo_datasets)) == held_out
    for row in rows:
        if not is_evaluation_split(row["split"]):
            assert not set(row["image_keys"]) & set(held_out), row["id"]
    lines = [
        json.loads(line)
        for f in (tmp_path / "a" / "quarantine").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    kept_out = [line for line in lines if line["code"] == "evaluation_image"]
    assert kept_out and all(line["split"] == "train" for line in kept_out)

    assert main([*command, "--out", str(tmp_path / "b")]) == 0
    assert _data_files(tmp_path / "a") == _data_files(tmp_path / "b")


def _row(regions: list[dict[str, Any]], groundings: list[dict[str, Any]]) -> dict[str, Any]:
    return make_row(
        source="grefcoco",
        split="train",
        native_key="5",
        image_path="/i/5.jpg",
        width=400,
        height=300,
        builder="grefcoco",
        builder_version="1",
        source_files=[],
        image_keys=["coco:5"],
        regions=regions,
        groundings=groundings,
    )


MASK = {"size": [300, 400], "counts": "PPYo1"}


def test_seed_turns_mark_every_target_once_and_reject_no_target_texts():
    regions = [
        make_region("1", [10, 10, 100, 120], MASK, "person"),
        make_region("2", [200, 50, 390, 290], MASK, "dog"),
        make_region("3", [5, 5, 12, 12], MASK, "cup"),  # tiny: never talked about
        make_region("4", [150, 150, 250, 250], None, "chair"),  # box only: no <seg>
        make_region("5", [0, 0, 400, 300], MASK, "person", ["crowd"]),
    ]
    groundings = [
        {"text": "the man on the left", "regions": [0]},
        {"text": "man and dog", "regions": [0, 1]},
        {"text": "the unicorn", "regions": []},
        {"text": "the little cup", "regions": [2]},
        {"text": "the wooden chair", "regions": [3]},
    ]
    step = SeedTurns(TemplateGenerator(), captions=10, referring=10)
    (built,) = step.process([Built(_row(regions, groundings), {"row": 1})]).rows
    turns = built.row["messages"]
    answers = {turns[i]["content"]: turns[i + 1]["content"] for i in range(0, len(turns), 2)}
    refer = {q: a for q, a in answers.items() if "region" not in q}
    assert sorted(refer.values()) == ["<rej>", "<seg0>", "<seg0> and <seg1>"]
    assert not any("cup" in q or "chair" in q for q in refer)
    captions = {q: a for q, a in answers.items() if "<region" in q}
    asked = sorted(int(q.split("<region")[1][0]) for q in captions)
    assert asked == [0, 1, 3]  # not the tiny cup, not the crowd
    assert answers[next(q for q in captions if "<region0>" in q)] == "the man on the left"


def test_position_and_size_words_follow_the_box_axes():
    assert position_words([0, 0, 50, 50], 600, 300) == "top left"
    assert position_words([550, 250, 600, 300], 600, 300) == "bottom right"
    assert position_words([0, 250, 50, 300], 600, 300) == "bottom left"  # x and y not swapped
    assert position_words([250, 100, 350, 200], 600, 300) == "center"
    assert size_words([0, 0, 5, 5], 100, 100) == "tiny"
    assert size_words([0, 0, 10, 10], 100, 100) == "small"  # 1% is not under 1%
    assert size_words([0, 0, 100, 70], 100, 100) == "very large"


def test_a_description_is_verified_against_the_facts():
    regions = [
        make_region("1", [10, 10, 200, 200], MASK, "dog", ["brown"]),
        make_region("2", [250, 20, 390, 200], MASK, "chair"),
    ]
    row = _row(regions, [])
    step = DescribeRegions(TemplateGenerator())
    (ask, _) = step.asks(row)
    assert ask.facts == region_facts(row, 0)
    padding = (
        " It rests quietly on the floor near the wall, close to everything else around it here."
    )
    base = "The brown dog lies on its side with its ears down and its tail curled." + padding
    assert step.check(ask, {"description": base}) == []
    assert any(
        "category" in p for p in step.check(ask, {"description": base.replace("dog", "animal")})
    )
    assert any(
        "['white']" in p for p in step.check(ask, {"description": base.replace("brown", "white")})
    )
    assert any("giraffe" in p for p in step.check(ask, {"description": base + " A giraffe waits."}))
    assert any(
        "<region7>" in p for p in step.check(ask, {"description": base + " It faces <region7>."})
    )
    assert any("words" in p for p in step.check(ask, {"description": "The brown dog."}))
    assert any(
        "meta words" in p
        for p in step.check(ask, {"description": base + " Its bounding box is big."})
    )
    template = step.template(ask)["description"]
    assert step.check(ask, {"description": template}) == []
    assert colour_contradiction("a red and brown dog", ["brown"]) is None


@pytest.mark.parametrize(
    ("content", "check"),
    [
        ("It is <regin0>.", "markup_malformed"),
        ("It is <seg7>.", "markup_unresolved"),
        ("<seg0> and <seg0>.", "seg_repeated"),
        ("Here: <seg1>", "seg_without_mask"),
        ("A person_standing there.", "text_artefact"),
        ("A dog next to a giraffe.", "absent_category"),
        ("word " * 30, "answer_length"),
    ],
)
def test_each_quality_check_names_itself(content, check):
    regions = [
        make_region("1", [10, 10, 200, 200], MASK, "dog"),
        make_region("2", [0, 0, 50, 50], None, "cat"),
    ]
    row = _row(regions, [])
    row["messages"] = [
        {"role": "user", "content": "What is <region0>?"},
        {"role": "assistant", "content": content},
    ]
    code, reason = row_problem(row, 1, 20)
    assert code == check and "messages[1]" in reason
    row["messages"] += [row["messages"][0], {"role": "assistant", "content": "A dog."}]
    row["messages"][1]["content"] = "A big dog."
    assert row_problem(row, 1, 20) is None
    row["messages"][1]["content"] = "A dog."
    assert row_problem(row, 1, 20) == (
        "duplicate_turn",
        "'What is <region0>?' -> 'A dog.' appears twice",
    )


def test_relations_read_from_each_side_of_the_triplet():
    regions = [
        make_region("1", [0, 0, 50, 50], None, "man"),
        make_region("2", [60, 0, 90, 50], None, "apple"),
    ]
    row = _row(regions, [])
    row["relations"] = [
        {"subject": 0, "predicate": "holding", "object": 1},
        {"subject": 1, "predicate": "has", "object": 0},
    ]
    assert region_relations(row, 0) == [
        "is holding <region1>, an apple",
        "<region1>, an apple, has it",
    ]
    assert region_relations(row, 1) == ["<region0>, a man, is holding it", "has <region0>, a man"]


def test_split_hygiene_keeps_training_rows_of_evaluation_images_out():
    step = KeepEvaluationImagesOut({"coco:5": "refcoco-unc:testA"})
    train = _row([], [])
    other = {**train, "id": "grefcoco:train:6", "image_keys": ["coco:6", "vg:6"]}
    evaluation = {**train, "id": "grefcoco:val:5", "split": "val"}
    rows = [Built(r, {"row": 1}) for r in (train, other, evaluation)]
    result = step.process(rows)
    assert [b.row["id"] for b in result.rows] == ["grefcoco:train:6", "grefcoco:val:5"]
    (rejected,) = result.rejected
    assert (rejected.key, rejected.code, dict(rejected.units)) == (
        "grefcoco:train:5",
        "evaluation_image",
        {"row": 1},
    )
    assert rejected.reason == "image coco:5 is in the evaluation split refcoco-unc:testA"
    assert [
        is_evaluation_split(s) for s in ("train", "val2017", "testA", "minival", "trainval")
    ] == [
        False,
        True,
        True,
        True,
        False,
    ]
