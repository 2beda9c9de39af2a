"""The MUSE builder on fixtures in PixelLM's format, with its quirks and its broken records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import load_dataset
from pycocotools import mask as mask_api

from regionkit.builders.base import BuilderInputError
from regionkit.builders.muse import (
    MuseBuilder,
    collect_instances,
    fill_placeholders,
    image_location,
    template_answer,
)
from regionkit.builders.samples.muse import MuseSample, add_bad_muse_records, write_muse_sample
from regionkit.catalog.masks import decode_rle
from regionkit.cli import main

from .harness import annotated_box, build_all, build_through_shards, cli_build, mask_box


@pytest.fixture
def muse_sample(tmp_path: Path) -> MuseSample:
    """Two splits of five images each (every record kind, one image in two records)."""
    return write_muse_sample(tmp_path / "muse", num_images=5, seed=3)


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows}


def _records_by_key(path: Path) -> dict[str, dict]:
    """The fixture's records by native key: its ids are the file's numbers, repeats get -2."""
    keyed: dict[str, dict] = {}
    for record in json.loads(path.read_text()):
        key = str(record["id"])
        keyed[key if key not in keyed else f"{key}-2"] = record
    return keyed


def _pycocotools_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The mask as PixelLM's loader makes it: frPyObjects, decode, sum over parts."""
    decoded = mask_api.decode(mask_api.frPyObjects(segmentation, height, width))
    return (decoded.sum(axis=2) > 0 if decoded.ndim == 3 else decoded).astype(np.uint8)


def _row(rows: dict[str, dict], split: str, key: str) -> dict:
    return rows[f"muse:{split}:{key}"]


def test_rows_match_the_records_and_pycocotools(muse_sample):
    built, rejected = build_all(MuseBuilder(muse_sample.root, muse_sample.images))
    assert rejected == []
    rows = _by_id(built)
    for split in ("train", "val"):
        records = _records_by_key(muse_sample.files[split])
        assert sorted(k for k in rows if k.startswith(f"muse:{split}:")) == sorted(
            f"muse:{split}:{key}" for key in records
        )
        disagreeing_boxes = 0
        for key, record in records.items():
            row = _row(rows, split, key)
            h, w = record["height"], record["width"]
            assert (row["width"], row["height"]) == (w, h)
            assert row["image_keys"] == [f"coco:{record['id']}"]
            if "file_name" in record:  # wins over the record's train2014 coco_url
                expected = muse_sample.images / "train2014" / record["file_name"]
            else:
                folder, name = record["coco_url"].split("/")[-2:]
                expected = muse_sample.images / folder / name
            assert row["image"]["path"] == str(expected.resolve())
            for region, instance in zip(row["regions"], record["ann_list"], strict=False):
                assert region["id"] == str(instance["id"])
                assert region["category"] == instance["category_name"]
                mask = _pycocotools_mask(instance["segmentation"], h, w)
                np.testing.assert_array_equal(decode_rle(region["mask"]), mask)
                assert region["bbox"] == annotated_box(instance, w, h)
                disagreeing_boxes += region["bbox"] != mask_box(mask)
        # the stored bbox is the polygon's extent, not the mask's box; the region keeps it
        assert disagreeing_boxes > 0
    assert {row["task"] for row in rows.values()} == {"reason_seg"}


def test_leftover_polygon_parts_are_dropped_from_kept_instances_and_counted(muse_sample):
    built, _ = build_all(MuseBuilder(muse_sample.root, muse_sample.images, ["train"]))
    held = {r["id"] for row in built for r in row["regions"]}
    records = json.loads(muse_sample.files["train"].read_text())
    slivers = {
        str(instance["id"]): sum(len(part) < 6 for part in instance["segmentation"])
        for record in records
        for instance in record.get("ann_list") or []
        if isinstance(instance.get("segmentation"), list) and "id" in instance
    }
    expected = sum(n for region_id, n in slivers.items() if region_id in held)
    _, stats = build_through_shards(MuseBuilder(muse_sample.root, muse_sample.images, ["train"]))
    assert expected > 0 and stats["adj_polygon_part_dropped"] == expected


def test_text_answers_get_seg_markup_in_answer_order(muse_sample):
    rows = _by_id(build_all(MuseBuilder(muse_sample.root, muse_sample.images))[0])
    record = _records_by_key(muse_sample.files["train"])["100001"]  # kind 0: file_name
    first, second = record["text_answers"]
    assert _row(rows, "train", "100001")["messages"] == [
        {"role": "user", "content": record["questions"][0]},
        {"role": "assistant", "content": first.replace("{seg}", "<seg0>")},
        {"role": "user", "content": record["questions"][1]},
        {
            "role": "assistant",
            "content": second.replace("{seg}", "<seg2>", 1).replace("{seg}", "<seg0>", 1),
        },
    ]


def test_answer_instances_join_ann_list_by_segmentation_and_extras_are_appended(muse_sample):
    rows = _by_id(build_all(MuseBuilder(muse_sample.root, muse_sample.images))[0])
    record = _records_by_key(muse_sample.files["train"])["100038"]  # kind 1: LVIS train2017
    assert all("id" not in value for answer in record["answers"] for value in answer)
    row = _row(rows, "train", "100038")
    extra = record["answers"][1][0]
    assert [r["id"] for r in row["regions"]] == [
        *(str(a["id"]) for a in record["ann_list"]),
        "answers[1][0]",
    ]
    assert row["regions"][2]["category"] == extra["category_name"]
    np.testing.assert_array_equal(
        decode_rle(row["regions"][2]["mask"]),
        _pycocotools_mask(extra["segmentation"], record["height"], record["width"]),
    )
    # the RLE instance is answered twice and stays one region
    assert row["messages"][1]["content"] == record["text_answers"][0].replace("{seg}", "<seg1>")
    assert row["messages"][3]["content"] == record["text_answers"][1].replace(
        "{seg}", "<seg2>", 1
    ).replace("{seg}", "<seg1>", 1).replace("{seg}", "<seg0>", 1)
    assert row["regions"][1]["mask"]["size"] == [record["height"], record["width"]]


def test_answers_without_text_answers_are_built_from_names(muse_sample):
    rows = _by_id(build_all(MuseBuilder(muse_sample.root, muse_sample.images))[0])
    records = _records_by_key(muse_sample.files["val"])
    rephrased = records["200075"]  # kind 2: rephrased_name, RLE instance last
    a, b = rephrased["answers"][0]
    assert [m["content"] for m in _row(rows, "val", "200075")["messages"][1::2]] == [
        f"{a['rephrased_name']} <seg2> and {b['rephrased_name']} <seg0>.",
        f"{b['rephrased_name']} <seg0>.",
    ]
    plain = records["200112"]  # kind 3: category_name only
    a, b = plain["answers"][0]
    assert "rephrased_name" not in a
    assert _row(rows, "val", "200112")["messages"][1]["content"] == (
        f"{a['category_name']} <seg1> and {b['category_name']} <seg0>."
    )


def test_rephrased_names_become_groundings_of_their_instance(muse_sample):
    rows = _by_id(build_all(MuseBuilder(muse_sample.root, muse_sample.images))[0])
    record = _records_by_key(muse_sample.files["val"])["200075"]
    assert _row(rows, "val", "200075")["groundings"] == [
        {"text": a["rephrased_name"], "regions": [k]} for k, a in enumerate(record["ann_list"])
    ]
    assert _row(rows, "val", "200112")["groundings"] == []  # no rephrased names there


def test_an_image_in_two_records_gets_numbered_keys_in_file_order(muse_sample):
    rows = _by_id(build_all(MuseBuilder(muse_sample.root, muse_sample.images))[0])
    first, again = _row(rows, "train", "100038"), _row(rows, "train", "100038-2")
    assert first["image"] == again["image"] and again["image_keys"] == ["coco:100038"]
    assert again["messages"][1]["content"] == "Something like <seg0> would do."
    assert len(first["messages"]) == 4 and len(again["messages"]) == 2


def test_instances_match_by_id_else_by_identical_segmentation():
    square = [[0, 0, 9, 0, 9, 9]]
    other = [[1, 1, 8, 1, 8, 8]]
    record = {
        "ann_list": [{"segmentation": square}, {"id": 7, "segmentation": other}],
        "answers": [
            [{"id": 3, "segmentation": square}],  # no id before: joins by segmentation
            [{"id": 7, "segmentation": square}],  # same id: joins ann_list[1] whatever its shape
            [{"id": 8, "segmentation": other}],  # both carry ids and they differ: a new one
            [{"segmentation": other}, "not an instance"],
        ],
    }
    instances, targets = collect_instances(record)
    assert [i.region_id for i in instances] == ["ann_list[0]", "7", "8", "answers[3][1]"]
    assert targets == [[0], [1], [2], [1, 3]]


URL = "http://images.cocodataset.org"


def test_image_location_prefers_file_name_then_coco_url():
    both = {
        "file_name": "COCO_train2014_000000000009.jpg",
        "coco_url": f"{URL}/val2017/000000000010.jpg",
    }
    assert image_location(both) == (9, "train2014/COCO_train2014_000000000009.jpg")
    unnumbered = {"coco_url": f"{URL}/train2017/photo.jpg", "id": 12}
    assert image_location(unnumbered) == (12, "train2017/photo.jpg")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"coco_url": f"{URL}/test2017/000000000001.jpg"}, "names no image in train2017 or"),
        ({"coco_url": f"{URL}/train2017/photo.jpg"}, "cannot tell the COCO image id"),
        ({"height": 3, "file_name": None}, "neither 'file_name' nor 'coco_url'"),
    ],
)
def test_image_location_says_what_is_wrong(record, message):
    with pytest.raises(ValueError, match=message):
        image_location(record)


def test_placeholders_and_templates():
    assert fill_placeholders("a {seg} b {seg}.", [4, 1]) == "a <seg4> b <seg1>."
    assert template_answer(["the dog"], [2]) == "the dog <seg2>."
    assert template_answer(["a", "b", "c"], [0, 1, 3]) == "a <seg0>, b <seg1> and c <seg3>."


def test_an_answer_with_no_instance_keeps_its_text(muse_sample):
    path = muse_sample.files["val"]
    records = json.loads(path.read_text())
    records.append(
        {
            **records[0],
            "questions": ["Is there a horse?"],
            "answers": [[]],
            "text_answers": ["No, there is no horse."],
        }
    )
    path.write_text(json.dumps(records))
    rows, rejected = build_all(MuseBuilder(muse_sample.root, muse_sample.images, ["val"]))
    assert rejected == []
    assert _row(_by_id(rows), "val", "200001-2")["messages"][1]["content"] == (
        "No, there is no horse."
    )


def test_every_bad_record_is_quarantined_with_its_reason(muse_sample):
    added = add_bad_muse_records(muse_sample)
    builder = MuseBuilder(muse_sample.root, muse_sample.images, ["train"])
    quarantined, stats = build_through_shards(builder, items_per_shard=4)
    codes = {q.key: q.code for q in quarantined}
    assert codes == {
        "records[6]": "malformed_record",
        "records[7]": "malformed_record",
        "record 9003": "malformed_record",
        "record 9004": "missing_image",
        "record 9005": "path_escape",
        "record 9006": "image_size_mismatch",
        "record 9007 question 0": "seg_count_mismatch",
        "record 9008 questions": "length_mismatch",
        "record 9009 instance 90090": "empty_mask",
        "record 9009 instance 90091": "malformed_polygon",
        "record 9009 instance 90092": "bad_segmentation",
        "record 9009 instance 90094": "bad_segmentation",
        "record 9009 instance 90093": "malformed_instance",
        "record 9009 instance answers[4][0]": "malformed_instance",
        "record 9009 question 0": "instance_quarantined",
        "record 9009 question 2": "instance_quarantined",
        "record 9009 question 3": "instance_quarantined",
        "record 9009 question 4": "instance_quarantined",
        "record 9009 question 5": "seg_target_without_mask",
        "record 9010 question 0": "malformed_question",
        "record 9010 question 1": "malformed_question",
        "record 9011 question 0": "empty_answer",
        "record 9011 question 1": "markup_in_text",
    }
    by_key = {q.key: q for q in quarantined}
    assert by_key["record 9007 question 0"].reason == (
        "muse_train.json: record 9007 (records[12]): question 0: field 'text_answers'[0] has "
        "1 '{seg}' placeholders but 'answers'[0] lists 2 instances"
    )
    assert "'questions' has 2, 'answers' has 1" in by_key["record 9008 questions"].reason
    assert by_key["record 9008 questions"].units == {"question": 2}
    assert "test2017" in by_key["records[7]"].reason and by_key["records[7]"].stage == "index"
    assert "field 'height' is missing" in by_key["record 9003"].reason
    assert by_key["record 9004"].units == {"image": 1, "question": 1, "instance": 1}
    assert by_key["record 9004"].record["id"] == 9004  # the whole record, nothing lost
    assert by_key["record 9009 question 2"].record["answer"][1]["id"] == 90070
    assert "90091 (ann_list[1]), quarantined as malformed_polygon" in (
        by_key["record 9009 question 2"].reason
    )
    assert "'<seg0>'" in by_key["record 9011 question 1"].reason
    # the good parts of partly bad records still reach rows
    rows = _by_id(build_all(builder)[0])
    assert [m["content"] for m in rows["muse:train:9009"]["messages"]] == ["Good?", "dog <seg0>."]
    assert (
        rows["muse:train:9008"]["messages"] == [] and rows["muse:train:9008"]["task"] == "regions"
    )
    totals = {unit: muse_sample.units["train"][unit] + added[unit] for unit in added}
    for unit, total in totals.items():
        assert stats[f"in_{unit}"] == total
        assert stats[f"out_{unit}"] + stats[f"q_{unit}"] == total
    assert (stats["q_image"], stats["q_question"], stats["q_instance"]) == (6, 17, 11)
    tiny = next(r for r in rows["muse:train:9009"]["regions"] if r["id"] == "90095")
    assert tiny["mask"] is None and tiny["bbox"] == [20.0, 20.0, 20.3, 20.3]
    assert "90095 (ann_list[5]), whose mask covers no pixel" in (
        by_key["record 9009 question 5"].reason
    )


def test_capitalised_file_names_are_accepted_but_not_both_spellings(tmp_path):
    sample = write_muse_sample(tmp_path / "muse", num_images=2, splits=("val",), capitalised=True)
    assert sample.files["val"].name == "MUSE_val.json"
    rows, _ = build_all(MuseBuilder(sample.root, sample.images))
    assert len(rows) == sample.units["val"]["image"]
    shutil.copy(sample.files["val"], sample.root / "muse_val.json")
    with pytest.raises(BuilderInputError, match=r"both muse_val\.json and MUSE_val\.json exist"):
        MuseBuilder(sample.root, sample.images).index()


def test_splits_select_files_and_missing_files_are_named(muse_sample, tmp_path):
    builder = MuseBuilder(muse_sample.root, muse_sample.images, ["val"])
    assert builder.source_files() == [muse_sample.files["val"].resolve()]
    assert list(builder.index().items) == ["val"]
    with pytest.raises(
        BuilderInputError,
        match=r"--splits: 'test_less' \(muse_test_less\.json or MUSE_test_less\.json\)"
        r".*the splits there are: train, val",
    ):
        MuseBuilder(muse_sample.root, muse_sample.images, ["test_less"]).index()
    with pytest.raises(BuilderInputError, match=r"no MUSE file found.*muse_train\.json"):
        MuseBuilder(tmp_path, tmp_path).index()


def test_truncated_or_wrongly_shaped_file_is_a_clear_error(muse_sample):
    path = muse_sample.files["train"]
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(BuilderInputError, match=r"muse_train\.json: not valid JSON.*truncated"):
        MuseBuilder(muse_sample.root, muse_sample.images).index()
    path.write_text(json.dumps({"records": []}))
    with pytest.raises(BuilderInputError, match=r"muse_train\.json: top level is a JSON dict"):
        MuseBuilder(muse_sample.root, muse_sample.images).index()


def test_builds_are_deterministic(muse_sample):
    first, _ = build_all(MuseBuilder(muse_sample.root, muse_sample.images))
    second, _ = build_all(MuseBuilder(muse_sample.root, muse_sample.images))
    assert first == second  # the same rows in the same order


def test_cli_builds_and_datasets_reads_it_back(ray_cluster, muse_sample, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli_build("muse", muse_sample, out)
    printed = capsys.readouterr().out
    assert code == 0
    totals = {u: sum(s[u] for s in muse_sample.units.values()) for u in ("image", "question")}
    assert f"images: {totals['image']} in = {totals['image']} out + 0 quarantined" in printed
    assert f"questions: {totals['question']} in = {totals['question']} out" in printed
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert sorted(ds) == ["train", "val"] and ds["val"].num_rows == 6
    row = next(r for r in ds["val"] if r["id"] == "muse:val:200075")
    assert row["image"].size == (row["width"], row["height"])
    assert row["messages"][1]["content"].endswith("<seg0>.")
    assert [r["mask"]["size"] for r in row["regions"]] == [[row["height"], row["width"]]] * 3

    with pytest.raises(SystemExit) as exited:
        main(["build", "muse", "--help"])
    assert exited.value.code == 0
    assert "muse_{split}.json" in capsys.readouterr().out
