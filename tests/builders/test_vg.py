"""The Visual Genome builder on fixtures in the real format, with its quirks and broken records."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset

from regionkit.builders.base import BuilderInputError, Built
from regionkit.builders.fields import RecordError
from regionkit.builders.samples.vg import VgSample, add_bad_vg_records, write_vg_sample
from regionkit.builders.vg import PARTS, VisualGenomeBuilder, _Assembly, _near_duplicate
from regionkit.builders.vg import _iou as builder_iou
from regionkit.cli import main

from .harness import build_all, build_through_shards, cli_build


@pytest.fixture
def vg_sample(tmp_path: Path) -> VgSample:
    return write_vg_sample(tmp_path / "vg", num_images=6)


def _builder(sample: VgSample, **kwargs: Any) -> VisualGenomeBuilder:
    return VisualGenomeBuilder(sample.root, sample.images, **kwargs)


def _elements(sample: VgSample, part: str) -> dict[int, dict]:
    """A part file's elements by image id (the first of each), read whole with the stdlib."""
    by_image: dict[int, dict] = {}
    for element in json.loads(sample.file(part).read_text(encoding="utf-8")):
        if isinstance(element, dict):
            by_image.setdefault(element.get("image_id", element.get("id")), element)
    return by_image


def _xyxy(record: dict, width: int, height: int) -> list[float]:
    x, y = record["x"], record["y"]
    w, h = record.get("w", record.get("width")), record.get("h", record.get("height"))
    return [max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)]


def _region(row: dict, region_id: str) -> tuple[int, dict]:
    ids = [r["id"] for r in row["regions"]]
    return ids.index(region_id), row["regions"][ids.index(region_id)]


def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes, written out plainly as the reference for the builder's matching."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _listed(sample: VgSample, image_id: int) -> tuple[set[int], dict[int, int]]:
    """The image's objects.json ids, and each merged id -> the object that holds it.

    Broken objects (`add_bad_vg_records`) may lack either field; they are skipped.
    """
    objects = [o for o in _elements(sample, "objects")[image_id]["objects"] if "object_id" in o]
    merged = {other: o["object_id"] for o in objects for other in o.get("merged_object_ids", [])}
    return {o["object_id"] for o in objects}, merged


def _mentions(sample: VgSample, image_id: int) -> list[int]:
    """Every object id that attributes.json and relationships.json name for the image, in order."""
    entries = _elements(sample, "attributes")[image_id]["attributes"]
    relationships = _elements(sample, "relationships")[image_id]["relationships"]
    ends = [r[side] for r in relationships for side in ("subject", "object")]
    return [record["object_id"] for record in entries + ends]


def _adjustments(builder: VisualGenomeBuilder) -> dict[str, dict[str, int]]:
    """Each row's `Built.adjustments`, by row id."""
    items = builder.index().items["train"]
    return {
        b.row["id"]: dict(b.adjustments) for b in builder.build_items(items) if isinstance(b, Built)
    }


def _image_id(row: dict) -> int:
    return int(row["id"].rsplit(":", 1)[1])


def _object_id(region_id: str) -> int:
    """`object:5` or `object:5@relationships.json` -> 5."""
    return int(region_id.split("@")[0].removeprefix("object:"))


def _assert_no_two_regions_are_one_object(row: dict, merged: dict[int, int]) -> None:
    """No object id has two regions, no merged id has one, and no added region repeats another."""
    objects = [(i, r) for i, r in enumerate(row["regions"]) if r["id"].startswith("object:")]
    ids = [_object_id(r["id"]) for _, r in objects]
    assert len(ids) == len(set(ids)), row["id"]
    assert not set(ids) & set(merged), row["id"]
    for i, added in objects:
        if "@" not in added["id"]:
            continue
        for j, other in objects:
            same_name = added["category"].lower() == other["category"].lower()
            assert i == j or not (same_name and _iou(added["bbox"], other["bbox"]) >= 0.85), (
                f"{row['id']}: {added['id']} repeats {other['id']}"
            )


def test_rows_carry_each_image_its_path_and_its_keys(vg_sample):
    rows, rejected = build_all(_builder(vg_sample))
    assert rejected == []
    images = {r["image_id"]: r for r in json.loads(vg_sample.file("image_data").read_text())}
    assert [row["id"] for row in rows] == [f"vg:train:{i}" for i in sorted(images)]
    for row in rows:
        record = images[int(row["id"].rsplit(":", 1)[1])]
        folder, name = record["url"].split("/")[-2:]
        assert row["image"]["path"] == str(vg_sample.images.resolve() / folder / name)
        assert (row["width"], row["height"]) == (record["width"], record["height"])
        keys = [f"vg:{record['image_id']}"]
        keys += [f"coco:{record['coco_id']}"] if record["coco_id"] is not None else []
        keys += [f"flickr:{record['flickr_id']}"] if record["flickr_id"] is not None else []
        assert row["image_keys"] == keys
        assert row["provenance"]["source_files"] == ["image_data.json"] + [
            p.file for p in PARTS.values()
        ]
    # the fixture mixes null and non-null ids and both image folders, as the real file does
    assert {len(row["image_keys"]) for row in rows} == {1, 2, 3}
    assert {row["image"]["path"].split("/")[-2] for row in rows} == {"VG_100K", "VG_100K_2"}


def test_objects_are_clipped_box_regions_named_by_their_first_name(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    objects = _elements(vg_sample, "objects")
    negative = 0
    for row in rows:
        for obj in objects[int(row["id"].rsplit(":", 1)[1])]["objects"]:
            _, region = _region(row, f"object:{obj['object_id']}")
            assert region["bbox"] == _xyxy(obj, row["width"], row["height"])
            assert region["category"] == obj["names"][0] and region["mask"] is None
            negative += obj["x"] < 0
    assert negative > 0
    first = rows[0]
    index, region = _region(first, f"object:{objects[1]['objects'][0]['object_id']}")
    assert region["bbox"][0] == 0.0  # x = -3 in the file
    two_names = objects[1]["objects"][1]
    assert two_names["names"][1] == "person"
    index, _ = _region(first, f"object:{two_names['object_id']}")
    assert {"text": "person", "regions": [index]} in first["groundings"]


def test_attributes_merge_into_their_objects_stripped_and_deduplicated(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    first = rows[0]
    entries = _elements(vg_sample, "attributes")[1]["attributes"]
    objects = _elements(vg_sample, "objects")[1]["objects"]
    messy, plain, missing = entries[0], entries[1], entries[2]
    assert "attributes" not in missing
    assert messy["attributes"][2] == "" and messy["attributes"][0].startswith(" ")
    cleaned = list(dict.fromkeys(a.strip() for a in messy["attributes"] if a.strip()))
    _, region = _region(first, f"object:{objects[0]['object_id']}")
    # the entry for the id merged into object 0 adds its attributes after object 0's own
    assert region["attributes"] == [*cleaned, "wooden", "old"]
    # the unlisted near duplicate of object 1 adds its attributes after object 1's own
    plain_region = _region(first, f"object:{plain['object_id']}")[1]
    assert plain_region["attributes"] == [*plain["attributes"], "striped"]
    assert _region(first, f"object:{missing['object_id']}")[1]["attributes"] == []
    lone = entries[-1]  # an object only attributes.json has: a region of its own
    _, region = _region(first, f"object:{lone['object_id']}@attributes.json")
    assert region["attributes"] == ["red"] and region["category"] == "sign"
    assert region["bbox"] == _xyxy(lone, first["width"], first["height"])


def test_relationships_link_object_regions_in_both_end_forms(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    first = rows[0]
    relationships = _elements(vg_sample, "relationships")[1]["relationships"]
    objects = [o["object_id"] for o in _elements(vg_sample, "objects")[1]["objects"]]
    listed, merged_into = _listed(vg_sample, 1)
    ends = {"name", "names"}
    assert {k for k in ends if k in relationships[0]["subject"]} == {"name"}
    assert {k for k in ends if k in relationships[0]["object"]} == {"names"}
    assert "merged_object_ids" in relationships[0]["object"]
    assert {k for k in ends if k in relationships[1]["subject"]} == {"names"}
    shadow = relationships[1]["object"]["object_id"]  # in no object of objects.json
    near = relationships[3]["subject"]["object_id"]  # repeats object 1, objects.json lacks it
    apart, echo = (relationships[4][side]["object_id"] for side in ("subject", "object"))
    bird, branch = (relationships[5][side]["object_id"] for side in ("subject", "object"))
    assert relationships[2]["subject"]["object_id"] in merged_into  # resolved through the merge
    assert not {shadow, near, apart, echo, bird, branch} & (listed | set(merged_into))
    renamed = next(
        e for e in _elements(vg_sample, "attributes")[1]["attributes"] if e["names"] == ["lamp"]
    )
    expected = [
        (f"object:{objects[0]}", "on", f"object:{objects[1]}"),
        (f"object:{objects[1]}", "wearing", f"object:{shadow}@relationships.json"),
        (f"object:{objects[0]}", "has", f"object:{objects[3]}"),
        (f"object:{objects[1]}", "on", f"object:{objects[0]}"),
        (
            f"object:{apart}@attributes.json",
            "beside",
            f"object:{renamed['object_id']}@attributes.json",
        ),
        # both ends new: each gets its own region, the subject's first
        (f"object:{bird}@relationships.json", "sitting on", f"object:{branch}@relationships.json"),
    ]
    ids = [r["id"] for r in first["regions"]]
    assert [
        (ids[r["subject"]], r["predicate"], ids[r["object"]]) for r in first["relations"]
    ] == expected
    assert [r["predicate"].strip().lower() for r in relationships] == [e[1] for e in expected]
    _, region = _region(first, f"object:{shadow}@relationships.json")
    assert region["category"] == relationships[1]["object"]["name"] == "shadow"
    assert region["bbox"] == _xyxy(relationships[1]["object"], first["width"], first["height"])


def test_an_unlisted_near_duplicate_lands_on_the_object_it_repeats(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    first = rows[0]
    entries = _elements(vg_sample, "attributes")[1]["attributes"]
    repeated = _elements(vg_sample, "objects")[1]["objects"][1]
    near = next(e for e in entries if e.get("attributes") == ["striped"])
    listed, merged_into = _listed(vg_sample, 1)
    assert near["object_id"] not in listed | set(merged_into)
    # a near duplicate by the definition, and only just: another case, a space, IoU 0.85-0.9
    assert near["names"][0] != repeated["names"][0]
    assert near["names"][0].strip().lower() == repeated["names"][0]
    iou = _iou(
        _xyxy(near, first["width"], first["height"]),
        _xyxy(repeated, first["width"], first["height"]),
    )
    assert 0.85 <= iou < 0.9
    index, region = _region(first, f"object:{repeated['object_id']}")
    assert "striped" in region["attributes"]
    assert not [r["id"] for r in first["regions"] if str(near["object_id"]) in r["id"]]
    # relationships.json names the same id: its end lands on the same region
    assert first["relations"][3]["subject"] == index


def test_near_duplicates_need_a_shared_name_and_an_iou_of_0_85(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    first = rows[0]
    size = first["width"], first["height"]
    entries = _elements(vg_sample, "attributes")[1]["attributes"]
    objects = _elements(vg_sample, "objects")[1]["objects"]
    apart = next(e for e in entries if e.get("attributes") == ["tall"])
    renamed = next(e for e in entries if e["names"] == ["lamp"])
    # the same name as object 1 just below the threshold: an object of its own
    assert apart["names"] == objects[1]["names"][:1]
    assert 0.8 < _iou(_xyxy(apart, *size), _xyxy(objects[1], *size)) < 0.85
    _, region = _region(first, f"object:{apart['object_id']}@attributes.json")
    assert region["attributes"] == ["tall"] and region["category"] == apart["names"][0]
    assert region["bbox"] == _xyxy(apart, *size)
    # object 3's very box under another name: an object of its own too
    assert _xyxy(renamed, *size) == _xyxy(objects[3], *size)
    assert renamed["names"] != objects[3]["names"]
    index, region = _region(first, f"object:{renamed['object_id']}@attributes.json")
    assert region["attributes"] == ["bright"] and region["category"] == "lamp"
    # a relationship end that repeats an added region lands on it, not on a region of its own
    echo = _elements(vg_sample, "relationships")[1]["relationships"][4]["object"]
    assert echo["name"] == "Lamp" and _iou(_xyxy(echo, *size), _xyxy(renamed, *size)) >= 0.85
    assert first["relations"][4]["object"] == index
    assert not [r["id"] for r in first["regions"] if str(echo["object_id"]) in r["id"]]


@pytest.mark.parametrize(
    ("names", "box", "expected"),
    [
        (["Dog "], [0, 0, 85, 10], 0),  # IoU exactly 0.85 counts; case and spaces do not
        (["dog"], [0, 0, 84.9, 10], None),  # IoU 0.849: apart
        (["cat"], [0, 0, 100, 10], None),  # the very box under another name: apart
        (["big  dog"], [0, 0, 100, 10], 2),  # any shared name, spaces collapsed
        (["dog"], [8, 0, 105, 10], 1),  # the best IoU wins (0.93 against 0.88)
        (["dog"], [5, 0, 105, 10], 0),  # a tie (0.905 each) goes to the earlier region
    ],
)
def test_a_near_duplicate_shares_a_name_and_overlaps_at_iou_0_85(names, box, expected):
    candidates = [
        (0, [0.0, 0.0, 100.0, 10.0], {"dog"}),
        (1, [10.0, 0.0, 110.0, 10.0], {"dog"}),
        (2, [0.0, 0.0, 100.0, 10.0], {"big dog", "hound"}),
    ]
    assert _near_duplicate([float(v) for v in box], names, candidates) == expected


def test_iou_is_intersection_over_union():
    # offset on both axes, where intersection over the enclosing box (81/121) would differ
    assert builder_iou([0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]) == pytest.approx(81 / 119)
    assert builder_iou([0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]) == 0.0


def test_no_two_regions_of_a_row_are_one_object(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    for row in rows:
        _assert_no_two_regions_are_one_object(row, _listed(vg_sample, _image_id(row))[1])
    # the unlisted ids attributes.json and relationships.json share became one region each
    first = rows[0]
    added = [r["id"] for r in first["regions"] if "@" in r["id"]]
    assert len(added) == 6 and len({_object_id(i) for i in added}) == 6


def test_adjustments_count_every_mention_that_lands_elsewhere(vg_sample):
    adjustments = _adjustments(_builder(vg_sample))
    # image 1: merged ids named by an attribute entry and a relationship subject; the near
    # duplicate named by both files, and the end repeating the lamp; six objects of their own
    # (the one just apart, the lamp, the sign only attributes.json has, the shadow, the bird
    # and the branch)
    assert adjustments["vg:train:1"] == {
        "object_id_merged": 2,
        "unlisted_object_matched": 3,
        "unlisted_object_added": 6,
    }
    rows, _ = build_all(_builder(vg_sample))
    totals: Counter[str] = Counter()
    for row in rows:
        listed, merged_into = _listed(vg_sample, _image_id(row))
        mentions = _mentions(vg_sample, _image_id(row))
        added = {_object_id(r["id"]) for r in row["regions"] if "@" in r["id"]}
        unlisted = [m for m in mentions if m not in listed and m not in merged_into]
        expected = {
            "object_id_merged": sum(m in merged_into for m in mentions),
            "unlisted_object_matched": sum(m not in added for m in unlisted),
            "unlisted_object_added": len(added),
        }
        assert adjustments[row["id"]] == {k: v for k, v in expected.items() if v}, row["id"]
        totals.update(adjustments[row["id"]])
    assert totals == {
        "object_id_merged": 7,
        "unlisted_object_matched": 3,
        "unlisted_object_added": 12,
    }


def test_region_descriptions_become_grounded_regions(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    regions = _elements(vg_sample, "regions")
    trailing = 0
    for row in rows:
        for record in regions[int(row["id"].rsplit(":", 1)[1])]["regions"]:
            index, region = _region(row, f"region:{record['region_id']}")
            assert region["bbox"] == _xyxy(record, row["width"], row["height"])
            assert region["category"] is None and region["attributes"] == []
            assert {"text": record["phrase"].strip(), "regions": [index]} in row["groundings"]
            trailing += record["phrase"] != record["phrase"].rstrip()
    assert trailing > 0
    first, second = rows[0], rows[1]
    assert first["groundings"][1]["text"] == "a café sign that says “Crème brûlée”"
    assert first["regions"][first["groundings"][1]["regions"][0]]["bbox"][0] == 0.0  # x = -2
    past_edge = regions[2]["regions"][2]
    assert past_edge["x"] + past_edge["width"] > second["width"]
    assert _region(second, f"region:{past_edge['region_id']}")[1]["bbox"][2] == second["width"]


def test_every_bad_record_is_quarantined_with_its_reason(vg_sample):
    added = add_bad_vg_records(vg_sample)
    quarantined, stats = build_through_shards(_builder(vg_sample))
    first_object = _elements(vg_sample, "objects")[1]["objects"][0]["object_id"]
    first_region = _elements(vg_sample, "regions")[1]["regions"][0]["region_id"]
    expected = {
        "image 9001": "missing_image",
        "image 9002": "path_escape",
        "image 9003": "image_size_mismatch",
        "image 9004": "malformed_image",
        "image 1": "duplicate_image",
        "objects of image 123456": "unknown_image",
        "objects of image 1": "repeated_image",
        "objects.json #9": "malformed_record",
        "relationships.json #6": "malformed_record",
        "object #4 of image 1": "malformed_object",
        "object 9201": "malformed_object",
        "object 9202": "empty_box",
        f"object {first_object}": "duplicate_object",
        "object 9204": "malformed_object",
        f"attributes of object {first_object}": "malformed_attribute_object",
        "attributes of object 9211": "malformed_attribute_object",
        "relationship 9301": "malformed_relationship",
        "relationship 9302": "malformed_relationship",
        "relationship 9303": "empty_box",
        "relationship 9304": "empty_predicate",
        "relationship 9305": "self_relationship",
        "relationship 9306": "malformed_relationship",
        "relationship 9307": "self_relationship",
        "region 9401": "malformed_region",
        "region 9402": "empty_box",
        f"region {first_region}": "duplicate_region",
        "region 9404": "empty_phrase",
        "region 9405": "malformed_region",
    }
    by_key = {q.key: q for q in quarantined}
    assert {key: by_key[key].code for key in expected} == expected
    assert len(quarantined) == len(expected)
    assert by_key["image 9001"].units == {"image": 1, "object": 1, "region": 1}
    assert by_key["image 9001"].record["objects.json"]["objects"][0]["object_id"] == 9100
    assert by_key["image 9004"].stage == "index" and by_key["image 9001"].stage == "build"
    assert by_key["object 9201"].reason == (
        "objects.json: image 1, objects[5] (object 9201): field 'x' should be a number, "
        "got a string"
    )
    assert (
        by_key["object 9201"].record["x"] == "10" and by_key["object 9201"].file == "objects.json"
    )
    assert "field 'subject.object_id' is missing" in by_key["relationship 9301"].reason
    assert "object box x=5, y=5, w=0, h=5 covers nothing" in by_key["relationship 9303"].reason
    assert "field 'w' or 'width' is missing" in by_key["region 9405"].reason
    assert "field 'width' should be an integer, got a string" in by_key["image 9004"].reason
    assert by_key["objects of image 123456"].reason.startswith("objects.json: element 7 (byte ")
    assert (
        by_key["relationships.json #6"].units == {} and by_key["relationships.json #6"].record == 42
    )

    totals = Counter(image=len(json.loads(vg_sample.file("image_data").read_text())))
    for name, part in PARTS.items():
        elements = json.loads(vg_sample.file(name).read_text())
        totals[part.unit] = sum(len(e[part.key]) for e in elements if isinstance(e, dict))
    for unit, total in totals.items():
        assert stats[f"in_{unit}"] == total, unit
        assert stats[f"out_{unit}"] + stats[f"q_{unit}"] == total, unit
        assert stats[f"q_{unit}"] == added[unit], unit


def test_a_relationship_whose_ends_are_one_object_is_quarantined_and_leaves_nothing(vg_sample):
    clean_adjustments = _adjustments(_builder(vg_sample))
    add_bad_vg_records(vg_sample)
    rows, rejected = build_all(_builder(vg_sample))
    by_key = {r.key: r for r in rejected}
    merged_id, holder = next(iter(_listed(vg_sample, 1)[1].items()))
    assert by_key["relationship 9305"].reason.startswith(
        "relationships.json: image 1, relationships[10] (relationship 9305): fields "
        f"'subject.object_id' ({merged_id}) and 'object.object_id' ({holder}) both land on "
        f"region object:{holder}: an id in an object's merged_object_ids is that object"
    )
    # two ends that objects.json does not list and that nearly duplicate each other
    assert "'object.object_id' (9318) both land on region object:9317@relationships.json" in (
        by_key["relationship 9307"].reason
    )
    assert by_key["relationship 9307"].code == "self_relationship"
    # neither a rejected relationship's good end (9306) nor its would-be regions stay behind,
    # and none of its mentions is counted
    objects = {_object_id(r["id"]) for r in rows[0]["regions"] if r["id"].startswith("object:")}
    assert not objects & {9316, 9317, 9318}
    assert _adjustments(_builder(vg_sample)) == clean_adjustments
    for row in rows:
        _assert_no_two_regions_are_one_object(row, _listed(vg_sample, _image_id(row))[1])


def test_image_data_v1_0_keys_images_by_id(vg_sample):
    path = vg_sample.file("image_data")
    records = json.loads(path.read_text())
    path.write_text(json.dumps([{"id": r.pop("image_id"), **r} for r in records]))
    rows, rejected = build_all(_builder(vg_sample))
    assert rejected == [] and len(rows) == len(records)


def test_parts_choose_the_files_read(vg_sample):
    for part in ("objects", "attributes", "relationships"):
        vg_sample.file(part).unlink()
    builder = _builder(vg_sample, parts=["regions"])
    assert builder.source_files() == [vg_sample.file("image_data"), vg_sample.file("regions")]
    assert builder.arguments()["parts"] == ["regions"]
    index = builder.index()
    assert all(set(item.units) == {"image", "region"} for item in index.items["train"])
    rows, _ = build_all(builder)
    assert all(r["id"].startswith("region:") for row in rows for r in row["regions"])
    assert all(row["relations"] == [] for row in rows)
    with pytest.raises(BuilderInputError, match=r"objects\.json: file not found.*'vg'.*--parts"):
        _builder(vg_sample, parts=["objects", "regions"]).index()


def test_work_items_carry_spans_not_records(vg_sample):
    index = _builder(vg_sample).index()
    items = index.items["train"]
    assert [item.key for item in items] == [str(i) for i in vg_sample.image_ids]
    item = items[0]
    assert set(item.payload) == {"image_data", *PARTS}
    data = vg_sample.file("regions").read_bytes()
    offset, length = item.payload["regions"]
    assert json.loads(data[offset : offset + length]) == _elements(vg_sample, "regions")[1]
    assert item.units == {
        "image": 1,
        "object": 4,
        "attribute_object": 9,
        "relationship": 6,
        "region": 5,
    }
    again = _builder(vg_sample).index().items["train"]
    assert pickle.dumps(again) == pickle.dumps(items)  # deterministic


def test_a_flat_sample_links_its_images_and_writes_only_the_parts_asked(tmp_path):
    sample = write_vg_sample(tmp_path / "flat", num_images=5, draw=False, parts=["regions"])
    assert sorted(p.name for p in sample.root.glob("*.json")) == [
        "image_data.json",
        "region_descriptions.json",
    ]
    paths = sorted(sample.images.glob("*/*.jpg"))
    assert len(paths) == 5 and len({p.stat().st_ino for p in paths}) == 2  # one per size
    rows, rejected = build_all(_builder(sample, parts=["regions"]))
    assert rejected == [] and len(rows) == 5
    # each file draws from its own stream: the regions match those of a full sample
    full = write_vg_sample(tmp_path / "full", num_images=5)
    assert sample.file("regions").read_bytes() == full.file("regions").read_bytes()


def test_missing_and_truncated_files_are_clear_errors(vg_sample):
    with pytest.raises(BuilderInputError, match=r"split\(s\) \['val'\] asked for with --splits"):
        _builder(vg_sample, splits=["val"]).index()
    regions = vg_sample.file("regions")
    data = regions.read_bytes()
    regions.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        BuilderInputError, match=r"region_descriptions\.json: not a complete JSON list: .*byte \d+"
    ):
        _builder(vg_sample).index()
    vg_sample.file("image_data").unlink()
    with pytest.raises(BuilderInputError, match=r"image_data\.json: file not found.*'vg'"):
        _builder(vg_sample).index()


def test_cli_builds_vg_and_datasets_reads_it(ray_cluster, vg_sample, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli_build("vg", vg_sample, out)
    printed = capsys.readouterr().out
    assert code == 0
    assert "images: 6 in = 6 out + 0 quarantined" in printed
    assert "relationships: 21 in = 21 out + 0 quarantined" in printed
    assert "kept with a change:" in printed
    for count, code in (
        (12, "unlisted_object_added"),
        (7, "object_id_merged"),
        (3, "unlisted_object_matched"),
    ):
        assert f"    {count} x {code}\n" in printed, code
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert ds.num_rows == 6
    row = ds[0]
    assert row["id"] == "vg:train:1" and row["image"].size == (row["width"], row["height"])
    predicates = ["on", "wearing", "has", "on", "beside", "sitting on"]
    assert [r["predicate"] for r in row["relations"]] == predicates
    assert row["groundings"][1]["text"] == "a café sign that says “Crème brûlée”"


def test_cli_help_lists_the_files_and_parts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "vg", "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for name in ("image_data.json", *(p.file for p in PARTS.values()), "--parts"):
        assert name in printed
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "vg", "--root", ".", "--images", ".", "--out", "x", "--parts", "boxes"])
    assert exit_info.value.code == 2
    assert "unknown part(s) ['boxes']" in capsys.readouterr().err


def test_mentions_of_a_quarantined_object_are_quarantined_not_revived():
    """An objects.json object that fails its checks must not come back as an 'unlisted' region
    from the box another file gives it: it is listed, and in quarantine."""
    image = _Assembly(1, 100, 80)
    flat = {"object_id": 5, "names": ["cat"], "merged_object_ids": [6], "x": 10, "y": 10}
    with pytest.raises(RecordError) as caught:
        image.add_object({**flat, "w": 0, "h": 0})
    assert caught.value.code == "empty_box"
    image.add_object({"object_id": 7, "names": ["mat"], "x": 0, "y": 40, "w": 90, "h": 30})
    cat = {"object_id": 5, "name": "cat", "x": 10, "y": 10, "w": 20, "h": 20}
    for mention in (
        lambda: image.add_relationship(
            {"relationship_id": 1, "predicate": "on", "subject": cat, "object": {"object_id": 7}}
        ),
        lambda: image.add_attribute_object({**cat, "object_id": 6, "attributes": ["black"]}),
    ):
        with pytest.raises(RecordError) as caught:
            mention()
        assert caught.value.code == "object_quarantined"
        assert "objects.json's object 5" in str(caught.value)
    assert [r["id"] for r in image.regions] == ["object:7"]
    assert image.relations == [] and not image.adjustments
