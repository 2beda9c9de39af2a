"""The refer builders (RefCOCO, RefCOCO+, RefCOCOg, RefCLEF) on fixtures in the real layout."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from pycocotools import mask as mask_api
from pycocotools.coco import COCO

from regionkit.builders.base import BuilderInputError
from regionkit.builders.refer import (
    RefClefBuilder,
    RefCocoBuilder,
    RefCocogBuilder,
    RefCocoPlusBuilder,
)
from regionkit.builders.safe_pickle import load_plain_pickle
from regionkit.builders.samples.refer import (
    ReferSample,
    add_bad_refer_records,
    py2_pickle,
    write_refer_sample,
)
from regionkit.catalog.masks import decode_rle
from regionkit.cli import main

from .harness import annotated_box, build_all, build_through_shards, cli_build, mask_box


@pytest.fixture
def refcoco(tmp_path: Path) -> ReferSample:
    return write_refer_sample(tmp_path / "data", num_images=8, seed=3)


@pytest.fixture
def refclef(tmp_path: Path) -> ReferSample:
    return write_refer_sample(tmp_path / "data", dataset="refclef", num_images=10, seed=4)


def _text(value):
    """Python 2 strings read the usual way (stdlib pickle, bytes), for a reference reading."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_text(v) for v in value]
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    return value


def _reference_refs(sample: ReferSample) -> list[dict]:
    return _text(pickle.loads(sample.refs.read_bytes(), encoding="bytes"))


def _expected_rows(sample: ReferSample) -> dict[tuple[str, int], list[dict]]:
    """(split, image id) -> its refs in ref-id order, from the reference reading."""
    grouped: dict[tuple[str, int], list[dict]] = {}
    for ref in sorted(_reference_refs(sample), key=lambda r: r["ref_id"]):
        grouped.setdefault((ref["split"], ref["image_id"]), []).append(ref)
    return grouped


def _refer_mask(ann: dict, image: dict) -> np.ndarray:
    """lichengunc/refer `REFER.getMask`: polygons through `frPyObjects`, anything else (RefCLEF's
    list of RLE dicts) decoded as it is; the parts axis summed, as a 0/1 mask."""
    segmentation = ann["segmentation"]
    if isinstance(segmentation, dict):  # a converted copy's lone dict, which getMask cannot index
        segmentation = [segmentation]
    if type(segmentation[0]) is list:  # polygon, refer's own test
        rle = mask_api.frPyObjects(segmentation, image["height"], image["width"])
    else:
        rle = segmentation
    decoded = mask_api.decode(rle)
    return (np.sum(decoded, axis=2) > 0).astype(np.uint8)


def _check_rows_against_refer(sample: ReferSample, rows: list[dict], source: str) -> int:
    """Check every row against refer's own reading (getRefBox, getMask); returns how many stored
    boxes differ from their masks' tight boxes."""
    coco = COCO(str(sample.instances))
    disagreeing = 0
    expected = _expected_rows(sample)
    assert [r["id"] for r in rows] == [
        f"{source}:{split}:{image_id}" for split, image_id in sorted(expected)
    ]
    for row in rows:
        refs = expected[(row["split"], int(row["id"].rsplit(":", 1)[1]))]
        image = coco.imgs[refs[0]["image_id"]]
        assert row["image"]["path"] == str(sample.images.resolve() / image["file_name"])
        assert (row["width"], row["height"]) == (image["width"], image["height"])
        ann_ids = sorted({r["ann_id"] for r in refs})
        assert [region["id"] for region in row["regions"]] == [str(a) for a in ann_ids]
        for region, ann_id in zip(row["regions"], ann_ids, strict=True):
            ann = coco.anns[ann_id]
            mask = _refer_mask(ann, image)
            np.testing.assert_array_equal(decode_rle(region["mask"]), mask)
            assert region["bbox"] == annotated_box(ann, image["width"], image["height"])
            assert region["category"] == coco.cats[ann["category_id"]]["name"]
            disagreeing += region["bbox"] != mask_box(mask)
        assert [(g["text"], g["regions"]) for g in row["groundings"]] == [
            (s["sent"], [ann_ids.index(ref["ann_id"])]) for ref in refs for s in ref["sentences"]
        ]
    return disagreeing


def test_refcoco_rows_join_refs_to_instances_masks(refcoco):
    rows, rejected = build_all(RefCocoBuilder(refcoco.root, refcoco.images))
    assert rejected == []
    # the box is the stored one (getRefBox); the real files' polygon extents differ from masks
    assert _check_rows_against_refer(refcoco, rows, "refcoco-unc") > 0
    assert {row["split"] for row in rows} == {"train", "val", "testA", "testB"}
    for row in rows:
        assert row["image_keys"] == [f"coco:{row['id'].rsplit(':', 1)[1]}"]
        assert row["provenance"]["source_files"] == ["instances.json", "refs(unc).p"]
        assert row["source"] == "refcoco-unc" and row["task"] == "regions"


def test_sliver_parts_leave_their_object_in_place_and_are_counted(refcoco):
    instances = json.loads(refcoco.instances.read_text())
    referred = {r["ann_id"] for r in load_plain_pickle(refcoco.refs)}
    slivers = sum(
        len(part) < 6
        for ann in instances["annotations"]
        if ann["id"] in referred
        for part in ann["segmentation"]
    )
    assert slivers > 0
    # one shard per item: a region shared by rows is counted in each row that holds it
    quarantined, stats = build_through_shards(
        RefCocoBuilder(refcoco.root, refcoco.images), items_per_shard=1
    )
    rows, _ = build_all(RefCocoBuilder(refcoco.root, refcoco.images))
    held = Counter(region["id"] for row in rows for region in row["regions"])
    expected = sum(
        held[str(ann["id"])] * sum(len(part) < 6 for part in ann["segmentation"])
        for ann in instances["annotations"]
    )
    assert quarantined == []
    assert stats["adj_polygon_part_dropped"] == expected >= slivers


def test_refclef_lists_of_rle_dicts_read_as_refer_reads_them(refclef):
    rows, rejected = build_all(RefClefBuilder(refclef.root, refclef.images))
    assert rejected == []
    _check_rows_against_refer(refclef, rows, "refclef-unc")
    instances = json.loads(refclef.instances.read_text())
    used = {int(region["id"]) for row in rows for region in row["regions"]}
    kinds = Counter(
        type(a["segmentation"]).__name__ for a in instances["annotations"] if a["id"] in used
    )
    assert kinds["list"] > 0 and kinds["dict"] > 0  # refer's list of dicts, and a lone dict
    assert any(  # and lists of several dicts, whose union the row holds
        isinstance(a["segmentation"], list) and len(a["segmentation"]) > 1
        for a in instances["annotations"]
        if a["id"] in used
    )
    for row in rows:
        image_id = row["id"].rsplit(":", 1)[1]
        assert row["image_keys"] == [f"saiapr:{image_id}"]
        # refer's subset unpacks to bare <id>.jpg files (CRIS matches names like 19579.jpg)
        assert row["image"]["path"] == str(refclef.images.resolve() / f"{image_id}.jpg")


def test_ref_file_name_suffix_names_no_file_and_is_ignored(refcoco):
    refs = load_plain_pickle(refcoco.refs)
    images = {i["id"]: i["file_name"] for i in json.loads(refcoco.instances.read_text())["images"]}
    for ref in refs:
        stem = images[ref["image_id"]].removesuffix(".jpg")
        assert (
            ref["file_name"].startswith(stem + "_") and ref["file_name"] != images[ref["image_id"]]
        )
        assert not (refcoco.images / ref["file_name"]).exists()
    rows, _ = build_all(RefCocoBuilder(refcoco.root, refcoco.images))
    assert all(Path(row["image"]["path"]).is_file() for row in rows)


def test_two_refs_to_one_annotation_share_one_region(refcoco):
    refs = load_plain_pickle(refcoco.refs)
    shared = Counter((r["split"], r["image_id"], r["ann_id"]) for r in refs)
    (split, image_id, ann_id), n = shared.most_common(1)[0]
    assert n == 2
    rows, _ = build_all(RefCocoBuilder(refcoco.root, refcoco.images))
    row = next(r for r in rows if r["id"] == f"refcoco-unc:{split}:{image_id}")
    index = [region["id"] for region in row["regions"]].index(str(ann_id))
    texts = [s["sent"] for r in refs if r["ann_id"] == ann_id for s in r["sentences"]]
    assert [g["text"] for g in row["groundings"] if g["regions"] == [index]] == texts
    assert len(row["regions"]) == len({r["ann_id"] for r in refs if r["image_id"] == image_id})


def test_an_image_with_refs_in_two_splits_gives_one_row_per_split(refcoco):
    refs = load_plain_pickle(refcoco.refs)
    splits_of: dict[int, set[str]] = {}
    for ref in refs:
        splits_of.setdefault(ref["image_id"], set()).add(ref["split"])
    image_id = next(i for i, s in splits_of.items() if len(s) == 2)
    rows, _ = build_all(RefCocoBuilder(refcoco.root, refcoco.images))
    mine = [r for r in rows if r["id"].endswith(f":{image_id}")]
    assert {r["split"] for r in mine} == splits_of[image_id]
    for row in mine:
        in_split = {str(r["ann_id"]) for r in refs if r["split"] == row["split"]}
        assert {region["id"] for region in row["regions"]} <= in_split


def test_annotations_no_ref_refers_to_are_not_regions(refcoco):
    referred = {r["ann_id"] for r in load_plain_pickle(refcoco.refs)}
    all_ids = {a["id"] for a in json.loads(refcoco.instances.read_text())["annotations"]}
    assert all_ids - referred  # refer ships every annotation of its images
    rows, _ = build_all(RefCocoBuilder(refcoco.root, refcoco.images))
    assert {int(region["id"]) for row in rows for region in row["regions"]} == referred


def test_non_ascii_text_from_python2_strings(refcoco):
    refs = load_plain_pickle(refcoco.refs)
    first, second = refs[0]["sentences"][:2]
    assert first["raw"].startswith("The Café ")  # UTF-8 bytes in the pickle
    assert second["raw"].startswith("the café ")  # latin-1 bytes in the pickle
    rows, _ = build_all(RefCocoBuilder(refcoco.root, refcoco.images))
    texts = [g["text"] for row in rows for g in row["groundings"]]
    assert first["sent"] in texts and "café" in first["sent"]


def test_splits_match_exactly_testa_is_not_testab(refclef):
    refs = load_plain_pickle(refclef.refs)
    assert {"testA", "testAB"} <= {r["split"] for r in refs}
    rows, _ = build_all(RefClefBuilder(refclef.root, refclef.images, splits=["testA"]))
    expected = {r["image_id"] for r in refs if r["split"] == "testA"}
    assert {row["split"] for row in rows} == {"testA"}
    assert {int(row["id"].rsplit(":", 1)[1]) for row in rows} == expected
    rows, _ = build_all(RefClefBuilder(refclef.root, refclef.images, splits=["testAB"]))
    assert {row["split"] for row in rows} == {"testAB"}
    with pytest.raises(BuilderInputError, match=r"\['testC'\] asked for with --splits"):
        RefClefBuilder(refclef.root, refclef.images, splits=["testC"]).index()


def test_split_schemes_name_the_file_and_the_row_source(tmp_path):
    refcocog = write_refer_sample(tmp_path / "g", dataset="refcocog", num_images=3)
    builder = RefCocogBuilder(refcocog.root, refcocog.images)
    assert builder.split_by == "umd" and builder.arguments()["split_by"] == "umd"
    rows, _ = build_all(builder)
    assert {row["source"] for row in rows} == {"refcocog-umd"}
    assert {row["split"] for row in rows} == {"train", "val", "test"}

    google = write_refer_sample(tmp_path / "c", split_by="google", num_images=2, splits=("train",))
    rows, _ = build_all(RefCocoBuilder(google.root, google.images, split_by="google"))
    assert [row["id"].split(":")[0] for row in rows] == ["refcoco-google"] * 2
    with pytest.raises(BuilderInputError, match=r"refs\(unc\)\.p: file not found.*'refcoco'"):
        RefCocoBuilder(google.root, google.images).index()
    with pytest.raises(BuilderInputError, match="refcoco\\+ has no split scheme 'google'"):
        RefCocoPlusBuilder(google.root, google.images, split_by="google")


def test_protocol_0_refs_build_the_same_rows(tmp_path):
    binary = write_refer_sample(tmp_path / "p2", num_images=4, seed=5)
    text = write_refer_sample(tmp_path / "p0", num_images=4, seed=5, protocol=0)
    assert text.refs.read_bytes().startswith(b"(lp0\n")
    rows2, _ = build_all(RefCocoBuilder(binary.root, binary.images))
    rows0, _ = build_all(RefCocoBuilder(text.root, text.images))
    strip = [{k: v for k, v in row.items() if k != "image"} for row in rows0]
    assert strip == [{k: v for k, v in row.items() if k != "image"} for row in rows2]


def test_the_same_files_give_the_same_items_and_rows(refcoco):
    first = RefCocoBuilder(refcoco.root, refcoco.images)
    second = RefCocoBuilder(refcoco.root, refcoco.images)
    items = first.index().items
    assert items == second.index().items
    assert [[i.key for i in items[s]] for s in sorted(items)] == [
        sorted((i.key for i in items[s]), key=int) for s in sorted(items)
    ]
    assert build_all(first) == build_all(second)


EXPECTED_REJECTIONS = [
    ("ref 90001", "malformed_ref", "index"),
    ("ref 90002", "malformed_ref", "index"),
    ("ref 90003", "unknown_annotation", "index"),
    ("ref 90004", "unknown_image", "index"),
    ("ref 90005", "annotation_image_mismatch", "index"),
    ("ref 0", "duplicate_ref", "index"),
    ("ref 90007", "category_mismatch", "index"),
    ("ref 90008", "no_sentences", "index"),
    ("ref 90009", "bad_annotation", "index"),
    ("ref 90010", "bad_image", "index"),
    ("ref 90011", "malformed_ref", "index"),
    ("ref 90012 sentence 90100", "malformed_sentence", "index"),
    ("ref 90012 sentence 90100", "empty_sentence", "index"),
    ("ref 90012 sentence #3", "malformed_sentence", "index"),
    ("ref 90013 sentence 90100", "malformed_sentence", "index"),
    ("ref 90013", "no_sentences", "index"),
    ("image 9001", "missing_image", "build"),
    ("image 9002", "path_escape", "build"),
    ("image 9003", "image_size_mismatch", "build"),
    ("ref 90017", "empty_mask", "build"),
    ("ref 90019", "polygon_outside_image", "build"),
    ("ref 90020", "bad_segmentation", "build"),
    ("ref 90021", "malformed_ref", "index"),
]


@pytest.mark.parametrize(
    "dataset, segmentation_code",
    [("refcoco", "malformed_polygon"), ("refclef", "bad_segmentation")],
)
def test_every_bad_record_is_quarantined_and_counts_balance(tmp_path, dataset, segmentation_code):
    sample = write_refer_sample(tmp_path / "data", dataset=dataset, num_images=6, draw=False)
    good_refs = load_plain_pickle(sample.refs)
    added = add_bad_refer_records(sample)
    builder = RefClefBuilder if dataset == "refclef" else RefCocoBuilder
    builder = builder(sample.root, sample.images)
    quarantined, stats = build_through_shards(builder, items_per_shard=2)

    total = len(good_refs) + added["ref"]
    expected = [*EXPECTED_REJECTIONS, ("ref 90018", segmentation_code, "build")]
    expected.append((f"ref #{total - 1}", "malformed_ref", "index"))  # not a dict at all
    assert sorted((q.key, q.code, q.stage) for q in quarantined) == sorted(expected)
    by_key = {q.key: q for q in quarantined}
    position = len(good_refs)
    assert by_key["ref 90001"].reason == (
        f"refs(unc).p: ref 90001 (item {position}): field 'ann_id' is missing"
    )
    assert "instances.json: annotations[" in by_key["ref 90009"].reason
    assert "'category_id' should be an integer, got a string" in by_key["ref 90009"].reason
    assert by_key["image 9001"].units == {"ref": 1, "sentence": 1}
    assert by_key["image 9001"].record["refs"][0]["ref_id"] == 90014
    assert by_key["ref 90017"].record["annotation"]["id"] == 9104
    assert by_key["ref 90008"].units == {"ref": 1}
    assert by_key["ref 90002"].record["image_id"] == str(sample_first_image(sample))

    sentences = sum(len(r["sentences"]) for r in good_refs) + added["sentence"]
    for unit, count in (("ref", total), ("sentence", sentences)):
        assert stats[f"in_{unit}"] == count
        assert stats[f"out_{unit}"] + stats[f"q_{unit}"] == count
    # ref 90012 keeps its one good sentence; every other bad ref and sentence is quarantined
    assert {k: v for k, v in stats.items() if k.startswith("q_")} == {
        "q_ref": added["ref"] - 1,
        "q_sentence": added["sentence"] - 1,
    }


def sample_first_image(sample: ReferSample) -> int:
    return json.loads(sample.instances.read_text())["images"][0]["id"]


def test_damaged_files_are_clear_errors_naming_them(refcoco):
    builder = RefCocoBuilder(refcoco.root, refcoco.images)
    data = refcoco.refs.read_bytes()
    refcoco.refs.write_bytes(data[: len(data) // 2])
    with pytest.raises(BuilderInputError, match=r"refs\(unc\)\.p: .*truncated"):
        builder.index()
    refcoco.refs.write_bytes(py2_pickle({"refs": []}))
    with pytest.raises(BuilderInputError, match=r"refs\(unc\)\.p: top level is a dict, not a list"):
        builder.index()
    refcoco.refs.write_bytes(data)
    text = refcoco.instances.read_text()
    refcoco.instances.write_text(text[: len(text) // 2])
    with pytest.raises(
        BuilderInputError, match=r"instances\.json: not a complete JSON object: .*truncated"
    ):
        builder.index()
    refcoco.instances.unlink()
    with pytest.raises(BuilderInputError, match=r"instances\.json: file not found.*'refcoco'"):
        builder.index()


def test_cli_builds_a_dataset_that_loads(ray_cluster, refcoco, tmp_path, capsys):
    add_bad_refer_records(refcoco)
    out = tmp_path / "out"
    code = cli_build("refcoco", refcoco, out)
    printed = capsys.readouterr().out
    assert code == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]["units"]
    for unit in ("ref", "sentence"):
        c = counts[unit]
        assert f"{unit}s: {c['in']} in = {c['out']} out + {c['quarantined']} quarantined" in printed
        assert c["quarantined"] > 0
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(ds) == {"train", "val", "testA", "testB"}
    row = ds["train"][0]
    assert row["id"].startswith("refcoco-unc:train:") and row["image"].size == (
        row["width"],
        row["height"],
    )
    assert row["groundings"][0]["regions"] == [0] and row["regions"][0]["mask"]["counts"]


def test_cli_help_names_the_expected_files_and_split_schemes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["build", "refcocog", "--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "instances.json" in printed and "refs({split_by}).p" in printed
    assert "--split-by {umd,google}" in printed and "refcocog-<split_by>" in printed


def test_flat_images_are_encoded_once_per_size_and_linked(tmp_path):
    sample = write_refer_sample(tmp_path, num_images=6, size=(64, 48), draw=False)
    files = sorted(sample.images.iterdir())
    assert len(files) == 6 and len({f.stat().st_ino for f in files}) == 2
