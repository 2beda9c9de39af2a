"""The gRefCOCO builder: multi-target and no-target refs, crowd targets, list or scalar ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from pycocotools.coco import COCO

from regionkit.builders.base import BuilderInputError
from regionkit.builders.grefcoco import GRefCocoBuilder
from regionkit.builders.samples.grefcoco import (
    GRefCocoSample,
    add_bad_grefcoco_records,
    write_grefcoco_sample,
)
from regionkit.catalog.masks import decode_rle
from regionkit.cli import main

from .harness import annotated_box, build_all, build_through_shards, cli_build


@pytest.fixture
def grefcoco(tmp_path: Path) -> GRefCocoSample:
    return write_grefcoco_sample(tmp_path / "data", num_images=8, seed=2)


def _targets(ref: dict, coco: COCO) -> list[int]:
    """The benchmark's ground truth of a ref, as ReLA's `load_grefcoco_json` reads it: `_toList`
    on `ann_id`, `[-1]` for none, and `iscrowd` annotations skipped."""
    ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
    if ids == [-1]:
        return []
    return sorted({a for a in ids if not coco.anns[a]["iscrowd"]})


def _rows_by_key(grefcoco: GRefCocoSample) -> dict[tuple[str, int], dict]:
    rows, rejected = build_all(GRefCocoBuilder(grefcoco.root, grefcoco.images))
    assert rejected == []
    return {(row["split"], int(row["id"].rsplit(":", 1)[1])): row for row in rows}


def test_rows_ground_every_target_with_masks_from_instances(grefcoco):
    coco = COCO(str(grefcoco.instances))
    refs = json.loads(grefcoco.grefs.read_text())
    rows = _rows_by_key(grefcoco)
    expected: dict[tuple[str, int], list[dict]] = {}
    for ref in sorted(refs, key=lambda r: r["ref_id"]):
        expected.setdefault((ref["split"], ref["image_id"]), []).append(ref)
    assert sorted(rows) == sorted(expected)
    for key, row_refs in expected.items():
        row = rows[key]
        assert row["id"] == f"grefcoco:{key[0]}:{key[1]}"
        assert row["image_keys"] == [f"coco:{key[1]}"]
        image = coco.imgs[key[1]]
        assert row["image"]["path"] == str(grefcoco.images.resolve() / image["file_name"])
        ann_ids = sorted({a for ref in row_refs for a in _targets(ref, coco)})
        assert [region["id"] for region in row["regions"]] == [str(a) for a in ann_ids]
        for region, ann_id in zip(row["regions"], ann_ids, strict=True):
            ann = coco.anns[ann_id]
            np.testing.assert_array_equal(decode_rle(region["mask"]), coco.annToMask(ann))
            assert region["bbox"] == annotated_box(ann, image["width"], image["height"])
            assert region["category"] == coco.cats[ann["category_id"]]["name"]
        assert [(g["text"], g["regions"]) for g in row["groundings"]] == [
            (s["sent"], [ann_ids.index(a) for a in _targets(ref, coco)])
            for ref in row_refs
            for s in ref["sentences"]
        ]
    assert {row["split"] for row in rows.values()} == {"train", "val", "testA", "testB"}


def test_a_crowd_target_is_left_out_as_the_benchmark_leaves_it_out(grefcoco):
    refs = json.loads(grefcoco.grefs.read_text())
    crowd_ids = {
        a["id"] for a in json.loads(grefcoco.instances.read_text())["annotations"] if a["iscrowd"]
    }
    with_crowd = [r for r in refs if isinstance(r["ann_id"], list) and set(r["ann_id"]) & crowd_ids]
    assert with_crowd and all(len(r["ann_id"]) == 2 for r in with_crowd)
    rows = _rows_by_key(grefcoco)
    for ref in with_crowd:
        row = rows[(ref["split"], ref["image_id"])]
        ids = [region["id"] for region in row["regions"]]
        (kept,) = set(ref["ann_id"]) - crowd_ids
        assert [
            g["regions"] for g in row["groundings"] if g["text"] == ref["sentences"][0]["sent"]
        ] == [[ids.index(str(kept))]]
        assert not set(ids) & {str(a) for a in crowd_ids}
    _, stats = build_through_shards(GRefCocoBuilder(grefcoco.root, grefcoco.images))
    assert stats["adj_crowd_target_left_out"] == len(with_crowd)


def test_a_no_target_ref_grounds_its_sentences_to_no_region(grefcoco):
    refs = json.loads(grefcoco.grefs.read_text())
    empty = [r for r in refs if r["ann_id"] == [-1]]
    assert empty and all(r["no_target"] is True and r["category_id"] == [-1] for r in empty)
    rows = _rows_by_key(grefcoco)
    for ref in empty:
        row = rows[(ref["split"], ref["image_id"])]
        texts = {s["sent"] for s in ref["sentences"]}
        assert [g["regions"] for g in row["groundings"] if g["text"] in texts] == [[]] * len(texts)


def test_scalar_ids_are_read_like_one_element_lists(grefcoco):
    refs = json.loads(grefcoco.grefs.read_text())
    scalar = next(r for r in refs if isinstance(r["ann_id"], int))
    row = _rows_by_key(grefcoco)[(scalar["split"], scalar["image_id"])]
    index = [region["id"] for region in row["regions"]].index(str(scalar["ann_id"]))
    text = scalar["sentences"][0]["sent"]
    grounded = [g["regions"] for g in row["groundings"] if g["text"] == text]
    assert grounded and all(regions == [index] for regions in grounded)


def test_file_name_suffix_is_ignored_and_image_id_names_the_image(grefcoco):
    refs = json.loads(grefcoco.grefs.read_text())
    suffixed = [r for r in refs if not (grefcoco.images / r["file_name"]).exists()]
    assert suffixed and all(r["file_name"].rsplit("_", 1)[1][:-4].isdigit() for r in suffixed)
    rows = _rows_by_key(grefcoco)
    for ref in suffixed:
        path = Path(rows[(ref["split"], ref["image_id"])]["image"]["path"])
        assert path.is_file() and path.name == f"COCO_train2014_{ref['image_id']:012d}.jpg"


def test_unused_annotations_are_not_regions(grefcoco):
    refs = json.loads(grefcoco.grefs.read_text())
    coco = COCO(str(grefcoco.instances))
    used = {a for ref in refs for a in _targets(ref, coco)}
    annotations = json.loads(grefcoco.instances.read_text())["annotations"]
    assert {a["id"] for a in annotations} - used
    rows = _rows_by_key(grefcoco)
    assert {int(r["id"]) for row in rows.values() for r in row["regions"]} == used


def test_splits_are_exact_and_deterministic(grefcoco):
    builder = GRefCocoBuilder(grefcoco.root, grefcoco.images, splits=["testA"])
    rows, _ = build_all(builder)
    assert rows and {row["split"] for row in rows} == {"testA"}
    assert build_all(builder) == (rows, [])
    with pytest.raises(BuilderInputError, match=r"\['test'\] asked for"):
        GRefCocoBuilder(grefcoco.root, grefcoco.images, splits=["test"]).index()


EXPECTED_REJECTIONS = [
    ("ref 90001", "malformed_ref", "index"),
    ("ref 90002", "malformed_ref", "index"),
    ("ref 90003", "bad_target", "index"),
    ("ref 90004", "bad_target", "index"),
    ("ref 90005", "no_target_mismatch", "index"),
    ("ref 90006", "unknown_annotation", "index"),
    ("ref 90007", "annotation_image_mismatch", "index"),
    ("ref 0", "duplicate_ref", "index"),
    ("ref 90009 sentence 90100", "malformed_sentence", "index"),
    ("ref 90010", "empty_mask", "build"),
    ("image 9001", "missing_image", "build"),
    ("ref 90013", "unknown_image", "index"),
    ("ref 90014 sentence 90100", "empty_sentence", "index"),
    ("ref 90014", "no_sentences", "index"),
    ("ref 90015", "crowd_only_targets", "index"),
]


def test_every_bad_record_is_quarantined_and_counts_balance(grefcoco):
    refs_before = json.loads(grefcoco.grefs.read_text())
    added = add_bad_grefcoco_records(grefcoco)
    builder = GRefCocoBuilder(grefcoco.root, grefcoco.images)
    quarantined, stats = build_through_shards(builder, items_per_shard=2)
    total = len(refs_before) + added["ref"]
    expected = [*EXPECTED_REJECTIONS, (f"ref #{total - 1}", "malformed_ref", "index")]
    assert sorted((q.key, q.code, q.stage) for q in quarantined) == sorted(expected)
    by_key = {q.key: q for q in quarantined}
    # both refs on the missing image go with it, the no-target one included
    assert by_key["image 9001"].units == {"ref": 2, "sentence": 2}
    assert [r["ref_id"] for r in by_key["image 9001"].record["refs"]] == [90011, 90012]
    assert "annotation 9101" in by_key["ref 90010"].reason
    assert by_key["ref 90010"].record["ref"]["ann_id"][1] == 9101
    assert "grefs(unc).json: ref 90004" in by_key["ref 90004"].reason
    assert "field 'ann_id'" in by_key["ref 90004"].reason

    sentences = sum(len(r["sentences"]) for r in refs_before) + added["sentence"]
    for unit, count in (("ref", total), ("sentence", sentences)):
        assert stats[f"in_{unit}"] == count
        assert stats[f"out_{unit}"] + stats[f"q_{unit}"] == count
    # ref 90009 keeps its good sentence; everything else added is quarantined
    assert {k: v for k, v in stats.items() if k.startswith("q_")} == {
        "q_ref": added["ref"] - 1,
        "q_sentence": added["sentence"] - 1,
    }


def test_damaged_or_missing_files_are_clear_errors(grefcoco):
    builder = GRefCocoBuilder(grefcoco.root, grefcoco.images)
    text = grefcoco.grefs.read_text()
    grefcoco.grefs.write_text(text[: len(text) // 3])
    with pytest.raises(BuilderInputError, match=r"grefs\(unc\)\.json: not valid JSON.*truncated"):
        builder.index()
    grefcoco.grefs.write_text('{"refs": []}')
    with pytest.raises(BuilderInputError, match=r"grefs\(unc\)\.json: top level is a dict"):
        builder.index()
    grefcoco.grefs.unlink()
    with pytest.raises(BuilderInputError, match=r"grefs\(unc\)\.json: file not found.*'grefcoco'"):
        builder.index()


def test_cli_builds_a_dataset_that_loads(ray_cluster, grefcoco, tmp_path, capsys):
    add_bad_grefcoco_records(grefcoco)
    out = tmp_path / "out"
    code = cli_build("grefcoco", grefcoco, out)
    printed = capsys.readouterr().out
    assert code == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]["units"]
    for unit in ("ref", "sentence"):
        c = counts[unit]
        assert f"{unit}s: {c['in']} in = {c['out']} out + {c['quarantined']} quarantined" in printed
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(ds) == {"train", "val", "testA", "testB"}
    rows = [row for split in ds.values() for row in split]
    groundings = [g["regions"] for row in rows for g in row["groundings"]]
    assert [] in groundings and any(len(g) == 2 for g in groundings)
    assert not any("crowd" in r["attributes"] for row in rows for r in row["regions"])
    assert "crowd_target_left_out" in printed


def test_cli_help_names_the_expected_files(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["build", "grefcoco", "--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "grefs(unc).json" in printed and "instances.json" in printed
