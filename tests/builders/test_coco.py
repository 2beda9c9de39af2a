"""The COCO builder on fixtures in the real format, with its quirks and its broken records."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from regionkit.builders.base import BuilderInputError
from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.coco import add_bad_coco_records
from regionkit.catalog.masks import decode_rle, rle_area

from .harness import build_all, build_through_shards


def test_rows_match_pycocotools_and_ignore_stored_area_and_bbox(coco_sample):
    coco = COCO(str(coco_sample.annotations))
    rows, rejected = build_all(CocoBuilder(coco_sample.annotations, coco_sample.images))
    assert rejected == []
    assert [r["id"] for r in rows] == [f"coco:val2017:{i}" for i in sorted(coco.imgs)]
    disagreeing_boxes = disagreeing_areas = 0
    for row in rows:
        image_id = int(row["id"].rsplit(":", 1)[1])
        anns = sorted(coco.imgToAnns[image_id], key=lambda a: a["id"])
        assert [r["id"] for r in row["regions"]] == [str(a["id"]) for a in anns]
        assert row["image_keys"] == [f"coco:{image_id}"]
        assert row["image"]["path"] == str(
            coco_sample.images.resolve() / coco.imgs[image_id]["file_name"]
        )
        assert (row["width"], row["height"]) == (
            coco.imgs[image_id]["width"],
            coco.imgs[image_id]["height"],
        )
        for region, ann in zip(row["regions"], anns, strict=True):
            expected = coco.annToMask(ann)
            np.testing.assert_array_equal(decode_rle(region["mask"]), expected)
            ys, xs = np.nonzero(expected)
            assert region["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert region["category"] == coco.cats[ann["category_id"]]["name"]
            assert region["attributes"] == (["crowd"] if ann["iscrowd"] else [])
            stored = ann["bbox"]
            disagreeing_boxes += region["bbox"] != [
                stored[0],
                stored[1],
                stored[0] + stored[2],
                stored[1] + stored[3],
            ]
            disagreeing_areas += rle_area(region["mask"]) != ann["area"]
    # the fixture carries the real files' quirk: stored values disagree with the masks
    assert disagreeing_boxes > 0 and disagreeing_areas > 0


def test_non_contiguous_category_ids_keep_their_names(coco_sample):
    rows, _ = build_all(CocoBuilder(coco_sample.annotations, coco_sample.images))
    names = {region["category"] for row in rows for region in row["regions"]}
    data = json.loads(coco_sample.annotations.read_text())
    used = {a["category_id"] for a in data["annotations"]}
    assert names == {c["name"] for c in data["categories"] if c["id"] in used}
    assert max(used) > len(data["categories"])  # ids have gaps, like COCO's 1..90 for 80 classes


def test_every_bad_record_is_quarantined_with_its_reason(coco_sample):
    added = add_bad_coco_records(coco_sample)
    quarantined, stats = build_through_shards(
        CocoBuilder(coco_sample.annotations, coco_sample.images)
    )
    by_key = {q.key: q for q in quarantined}
    expected = {
        "image 9001": "missing_image",
        "image 9002": "path_escape",
        "image 9003": "image_size_mismatch",
        "image 9004": "malformed_image",
        "annotation 9101": "unknown_category",
        "annotation 9102": "degenerate_polygon",
        "annotation 9103": "degenerate_polygon",
        "annotation 9104": "bbox_outside_image",
        "annotation 9105": "empty_mask",
        "annotation 9106": "bad_segmentation",
        "annotation 9107": "unknown_image",
        "annotation 9108": "malformed_annotation",
    }
    assert {key: by_key[key].code for key in expected} == expected
    assert len(quarantined) == len(expected)  # 9109/9110 travel with their images
    assert by_key["image 9001"].units == {"image": 1, "annotation": 1}
    assert by_key["image 9001"].record["annotations"][0]["id"] == 9109
    assert (
        "category_id" in by_key["annotation 9108"].reason
        and "str" in by_key["annotation 9108"].reason
    )
    assert "instances_val2017.json" in by_key["annotation 9102"].reason
    assert by_key["image 9004"].stage == "index" and by_key["image 9001"].stage == "build"
    data = json.loads(coco_sample.annotations.read_text())
    for unit, total in (("image", len(data["images"])), ("annotation", len(data["annotations"]))):
        assert stats[f"in_{unit}"] == total
        assert stats[f"out_{unit}"] + stats[f"q_{unit}"] == total
    assert stats["q_image"] == added["image"] and stats["q_annotation"] == added["annotation"]


def test_missing_file_names_the_file_and_the_catalog_entry(tmp_path):
    builder = CocoBuilder(tmp_path / "instances_val2017.json", tmp_path)
    with pytest.raises(BuilderInputError, match=r"instances_val2017\.json: file not found.*'coco'"):
        builder.index()


def test_truncated_json_is_a_clear_error(coco_sample):
    text = coco_sample.annotations.read_text()
    coco_sample.annotations.write_text(text[: len(text) // 2])
    with pytest.raises(BuilderInputError, match=r"not valid JSON \(line 1, column \d+.*truncated"):
        CocoBuilder(coco_sample.annotations, coco_sample.images).index()


def test_split_comes_from_the_file_name_or_must_be_given(tmp_path):
    assert CocoBuilder(tmp_path / "instances_train2014.json", tmp_path).split == "train2014"
    with pytest.raises(BuilderInputError, match="pass --split"):
        CocoBuilder(tmp_path / "coco.json", tmp_path)
    assert CocoBuilder(tmp_path / "coco.json", tmp_path, split="minival").split == "minival"
