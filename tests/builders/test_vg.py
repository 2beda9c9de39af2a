"""The Visual Genome builder on fixtures in the real format, with its quirks and broken records."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset

from regionkit.builders.base import BuilderInputError
from regionkit.builders.samples.vg import VgSample, add_bad_vg_records, write_vg_sample
from regionkit.builders.vg import PARTS, VisualGenomeBuilder
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
    assert _region(first, f"object:{plain['object_id']}")[1]["attributes"] == plain["attributes"]
    assert _region(first, f"object:{missing['object_id']}")[1]["attributes"] == []
    lone = entries[-1]  # an object only attributes.json has: a region of its own
    _, region = _region(first, f"object:{lone['object_id']}")
    assert region["attributes"] == ["red"] and region["category"] == "sign"
    assert region["bbox"] == _xyxy(lone, first["width"], first["height"])


def test_relationships_link_object_regions_in_both_end_forms(vg_sample):
    rows, _ = build_all(_builder(vg_sample))
    first = rows[0]
    relationships = _elements(vg_sample, "relationships")[1]["relationships"]
    merged_into = {
        other: obj["object_id"]
        for obj in _elements(vg_sample, "objects")[1]["objects"]
        for other in obj["merged_object_ids"]
    }
    ends = {"name", "names"}
    assert {k for k in ends if k in relationships[0]["subject"]} == {"name"}
    assert {k for k in ends if k in relationships[0]["object"]} == {"names"}
    assert "merged_object_ids" in relationships[0]["object"]
    assert {k for k in ends if k in relationships[1]["subject"]} == {"names"}
    for relationship, relation in zip(relationships, first["relations"], strict=True):
        for end in ("subject", "object"):
            object_id = relationship[end]["object_id"]
            region_id = f"object:{merged_into.get(object_id, object_id)}"
            assert first["regions"][relation[end]]["id"] == region_id
        assert relation["predicate"] == relationship["predicate"].strip().lower()
    assert [r["predicate"] for r in first["relations"]] == ["on", "wearing", "has"]
    assert relationships[2]["subject"]["object_id"] in merged_into  # resolved through the merge
    unknown = relationships[1]["object"]  # in no object of objects.json: a region of its own
    _, region = _region(first, f"object:{unknown['object_id']}")
    assert region["category"] == unknown["name"] == "shadow"
    assert region["bbox"] == _xyxy(unknown, first["width"], first["height"])


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
        "attribute_object": 6,
        "relationship": 3,
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
    assert "relationships: 18 in = 18 out + 0 quarantined" in printed
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert ds.num_rows == 6
    row = ds[0]
    assert row["id"] == "vg:train:1" and row["image"].size == (row["width"], row["height"])
    assert [r["predicate"] for r in row["relations"]] == ["on", "wearing", "has"]
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
