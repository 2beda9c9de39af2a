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

from .harness import annotated_box, build_all, build_through_shards, mask_box


def test_rows_keep_the_stored_box_and_take_masks_from_pycocotools(coco_sample):
    coco = COCO(str(coco_sample.annotations))
    rows, rejected = build_all(CocoBuilder(coco_sample.annotations, coco_sample.images))
    assert rejected == []
    assert [r["id"] for r in rows] == [f"coco:val2017:{i}" for i in sorted(coco.imgs)]
    boxes_unlike_masks = disagreeing_areas = box_only = 0
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
            if region["mask"] is None:  # a tiny object: pycocotools draws no pixel of it
                assert expected.sum() == 0
                box_only += 1
            else:
                np.testing.assert_array_equal(decode_rle(region["mask"]), expected)
                boxes_unlike_masks += region["bbox"] != mask_box(expected)
            image = coco.imgs[image_id]
            assert region["bbox"] == annotated_box(ann, image["width"], image["height"])
            assert region["category"] == coco.cats[ann["category_id"]]["name"]
            assert region["attributes"] == (["crowd"] if ann["iscrowd"] else [])
            disagreeing_areas += region["mask"] is None or rle_area(region["mask"]) != ann["area"]
    # the fixture carries the real files' quirk: stored values disagree with the masks
    assert boxes_unlike_masks > 0 and disagreeing_areas > 0 and box_only > 0


def test_sliver_parts_and_tiny_objects_keep_their_object_and_are_counted(coco_sample):
    data = json.loads(coco_sample.annotations.read_text())
    polygons = [a["segmentation"] for a in data["annotations"] if not a["iscrowd"]]
    slivers = sum(len(part) < 6 for parts in polygons if isinstance(parts, list) for part in parts)
    specks = [a for a in data["annotations"] if a["category_id"] == 37 and a["area"] < 1]
    assert slivers > 0 and specks
    quarantined, stats = build_through_shards(
        CocoBuilder(coco_sample.annotations, coco_sample.images)
    )
    assert quarantined == []
    assert stats["out_annotation"] == len(data["annotations"])
    assert stats["adj_polygon_part_dropped"] == slivers
    assert stats["adj_mask_covers_no_pixel"] == len(specks)
    rows, _ = build_all(CocoBuilder(coco_sample.annotations, coco_sample.images))
    regions = {r["id"]: r for row in rows for r in row["regions"]}
    for speck in specks:
        region = regions[str(speck["id"])]
        assert region["mask"] is None
        x, y, w, h = speck["bbox"]
        assert region["bbox"] == [x, y, x + w, y + h]


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
        "annotation 9102": "malformed_bbox",
        "annotation 9103": "malformed_polygon",
        "annotation 9104": "bbox_outside_image",
        "annotation 9105": "empty_mask",
        "annotation 9106": "bad_segmentation",
        "annotation 9107": "unknown_image",
        "annotation 9108": "malformed_annotation",
        "annotation 9111": "bbox_mask_mismatch",
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
    with pytest.raises(
        BuilderInputError, match=r"not a complete JSON object: .* at byte \d+.*truncated"
    ):
        CocoBuilder(coco_sample.annotations, coco_sample.images).index()


def test_split_comes_from_the_file_name_or_must_be_given(tmp_path):
    assert CocoBuilder(tmp_path / "instances_train2014.json", tmp_path).split == "train2014"
    with pytest.raises(BuilderInputError, match="pass --split"):
        CocoBuilder(tmp_path / "coco.json", tmp_path)
    assert CocoBuilder(tmp_path / "coco.json", tmp_path, split="minival").split == "minival"
