"""The VCR builder on fixtures in the real layout, with its quirks and its broken records."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from pycocotools import mask as mask_api

from regionkit.builders.base import BuilderInputError
from regionkit.builders.samples.vcr import VcrSample, add_bad_vcr_records, write_vcr_sample
from regionkit.builders.vcr import VcrBuilder, render_tokens
from regionkit.catalog.masks import decode_rle
from regionkit.cli import main

from .harness import build_all, build_through_shards, cli_build

IDENTITY = {k: k for k in range(10)}


@pytest.fixture
def vcr_sample(tmp_path: Path) -> VcrSample:
    return write_vcr_sample(tmp_path / "vcr", num_images=2, questions_per_image=2, seed=3)


def _lines(sample: VcrSample, split: str) -> list[dict]:
    return [json.loads(t) for t in (sample.root / f"{split}.jsonl").read_text().splitlines()]


def _rows_by_id(builder: VcrBuilder) -> dict[str, dict]:
    return {row["id"]: row for row in build_all(builder)[0]}


def _polygon_mask(polygons: list, height: int, width: int) -> np.ndarray:
    """pycocotools' own reading of nested [[x, y], ...] polygons: flatten, rasterise, merge."""
    flat = [[v for point in polygon for v in point] for polygon in polygons if len(polygon) >= 3]
    return mask_api.decode(mask_api.merge(mask_api.frPyObjects(flat, height, width)))


def test_every_metadata_object_is_a_region_with_box_score_mask_and_name(vcr_sample):
    built, rejected = build_all(VcrBuilder(vcr_sample.root, vcr_sample.images))
    assert rejected == []
    rows = {row["id"]: row for row in built}
    for split in vcr_sample.splits:
        for line in _lines(vcr_sample, split):
            row = rows[f"vcr:{split}:{line['annot_id']}"]
            metadata = json.loads((vcr_sample.images / line["metadata_fn"]).read_text())
            width, height = metadata["width"], metadata["height"]
            assert (row["width"], row["height"]) == (width, height)
            assert row["image"]["path"] == str(vcr_sample.images.resolve() / line["img_fn"])
            assert row["image_keys"] == [f"vcr:{line['img_fn'].removesuffix('.jpg')}"]
            assert row["task"] == "region_vqa"
            assert row["provenance"]["source_files"] == [f"{split}.jsonl", line["metadata_fn"]]
            assert [r["id"] for r in row["regions"]] == [
                str(k) for k in range(len(line["objects"]))
            ]
            for region, box, segm, name in zip(
                row["regions"], metadata["boxes"], metadata["segms"], metadata["names"], strict=True
            ):
                x1, y1, x2, y2, score = box
                assert region["bbox"] == [max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)]
                assert region["score"] == score
                assert region["category"] == name
                np.testing.assert_array_equal(
                    decode_rle(region["mask"]), _polygon_mask(segm, height, width)
                )


def test_a_two_part_polygon_is_one_mask(vcr_sample):
    line = _lines(vcr_sample, "val")[0]
    metadata = json.loads((vcr_sample.images / line["metadata_fn"]).read_text())
    first, second = metadata["segms"][1]
    assert isinstance(first[0], list) and len(first[0]) == 2  # nested [x, y] pairs
    rows = _rows_by_id(VcrBuilder(vcr_sample.root, vcr_sample.images, ["val"]))
    mask = decode_rle(rows[f"vcr:val:{line['annot_id']}"]["regions"][1]["mask"])
    h, w = mask.shape
    parts = [_polygon_mask([p], h, w) for p in (first, second)]
    assert parts[0].sum() > 0 and parts[1].sum() > 0
    np.testing.assert_array_equal(mask, parts[0] | parts[1])


def test_a_box_past_the_border_is_clipped_to_the_image(vcr_sample):
    line = _lines(vcr_sample, "train")[0]
    metadata = json.loads((vcr_sample.images / line["metadata_fn"]).read_text())
    assert metadata["boxes"][-1][2] > metadata["width"]
    rows = _rows_by_id(VcrBuilder(vcr_sample.root, vcr_sample.images, ["train"]))
    assert rows[f"vcr:train:{line['annot_id']}"]["regions"][-1]["bbox"][2] == metadata["width"]


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        (["Does", [0], "live", "here", "?"], "Does <region0> live here?"),
        (["Why", "is", [1, 2], "here", "?"], "Why is <region1> and <region2> here?"),
        ([[0, 1, 2], "are", "friends", "."], "<region0>, <region1> and <region2> are friends."),
        (["No", [1], "does", "n't", "belong", "."], "No <region1> doesn't belong."),
        (["What", "is", [1], "'s", "job", "?"], "What is <region1>'s job?"),
        (["Yes", ",", "(", "sadly", ")", "!"], "Yes, (sadly)!"),
        (["Everyone", "is", "sad", ";", "100", "%"], "Everyone is sad; 100%"),
    ],
)
def test_tokens_render_as_readable_text_with_region_markup(tokens, text):
    assert render_tokens(tokens, IDENTITY) == text


def test_one_based_orig_strings_match_the_zero_based_markup(vcr_sample):
    line = _lines(vcr_sample, "val")[0]
    assert line["question_orig"] == "Does 1 live in this house?"
    assert line["question"][1] == [0]
    rows = _rows_by_id(VcrBuilder(vcr_sample.root, vcr_sample.images, ["val"]))
    first = rows[f"vcr:val:{line['annot_id']}"]["messages"][0]["content"]
    assert first.startswith("Does <region0> live in this house?\nA. ")


def test_messages_keep_q_to_a_and_qa_to_r_with_the_correct_labels(vcr_sample):
    rows = _rows_by_id(VcrBuilder(vcr_sample.root, vcr_sample.images, ["val"]))
    line = _lines(vcr_sample, "val")[0]
    messages = rows[f"vcr:val:{line['annot_id']}"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    answers = [
        "No, <region0> lives nowhere close.",
        "Yes, <region0> works there.",
        "No, <region0> is a visitor.",
        "No <region1> doesn't belong here.",
    ]
    rationales = [
        "<region0> is nicely dressed.",
        "<region2> sits down and <region0> has a coat.",
        "<region1> is wearing a uniform.",
        "<region0> is wearing outerwear, holding an umbrella, and there is a <region3> outside.",
    ]
    assert messages[0]["content"] == "\n".join(
        ["Does <region0> live in this house?"]
        + [f"{'ABCD'[i]}. {a}" for i, a in enumerate(answers)]
    )
    a, r = line["answer_label"], line["rationale_label"]
    assert messages[1]["content"] == f"{'ABCD'[a]}. {answers[a]}"
    assert messages[2]["content"] == "\n".join(
        ["Why?"] + [f"{'ABCD'[i]}. {x}" for i, x in enumerate(rationales)]
    )
    assert messages[3]["content"] == f"{'ABCD'[r]}. {rationales[r]}"
    assert line["answer_orig"] == answers[a].replace("<region0>", "1").replace("<region1>", "2")


def test_the_unlabelled_test_split_carries_user_turns_only(vcr_sample):
    lines = _lines(vcr_sample, "test")
    assert not any(k in line for line in lines for k in ("answer_label", "question_orig"))
    rows, rejected = build_all(VcrBuilder(vcr_sample.root, vcr_sample.images, ["test"]))
    assert rejected == [] and len(rows) == len(lines)
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "user"]
        assert row["messages"][1]["content"].startswith("Why?\nA. ")


def test_splits_default_to_the_files_present_and_can_be_chosen(vcr_sample):
    (vcr_sample.root / "test.jsonl").unlink()
    assert sorted(VcrBuilder(vcr_sample.root, vcr_sample.images).index().items) == ["train", "val"]
    builder = VcrBuilder(vcr_sample.root, vcr_sample.images, ["val"])
    assert list(builder.index().items) == ["val"]
    assert builder.source_files() == [vcr_sample.root.resolve() / "val.jsonl"]
    with pytest.raises(
        BuilderInputError,
        match=r"--splits: 'test' \(test\.jsonl\); the splits there are: train, val$",
    ):
        VcrBuilder(vcr_sample.root, vcr_sample.images, ["test"]).index()


def test_rows_follow_the_question_numbers_and_rebuild_identically(tmp_path):
    sample = write_vcr_sample(tmp_path / "vcr", num_images=6, draw=False)
    builder = VcrBuilder(sample.root, sample.images, ["val"])
    keys = [item.key for item in builder.index().items["val"]]
    assert keys == [f"val-{n}" for n in range(12)]  # val-10 after val-9, not after val-1
    first, _ = build_all(builder)
    again, _ = build_all(VcrBuilder(sample.root, sample.images, ["val"]))
    assert first == again  # the same rows in the same order


def _input_units(sample: VcrSample) -> Counter:
    """Questions (non-blank lines) and objects (entries of parsable lines' `objects`)."""
    units: Counter = Counter()
    for split in sample.splits:
        for text in (sample.root / f"{split}.jsonl").read_text().splitlines():
            units["question"] += 1
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(line, dict):
                units["object"] += len(line["objects"])
    return units


def test_every_bad_record_is_quarantined_with_its_reason(vcr_sample):
    before = _input_units(vcr_sample)
    added = add_bad_vcr_records(vcr_sample)
    total = _input_units(vcr_sample)
    assert total == before + Counter(added)
    quarantined, stats = build_through_shards(VcrBuilder(vcr_sample.root, vcr_sample.images))
    by_key = {q.key: q for q in quarantined}
    expected = {
        "line 5": "bad_json",
        "line 6": "malformed_question",
        "question val-902": "malformed_question",
        "question val-903": "malformed_question",
        "question val-904": "index_out_of_range",
        "question val-905": "label_out_of_range",
        "question val-906": "missing_metadata",
        "question val-907": "bad_metadata",
        "question val-908": "metadata_mismatch",
        "question val-909": "objects_mismatch",
        "question val-910": "missing_image",
        "question val-911": "path_escape",
        "question val-912": "path_escape",
        "question val-913": "image_size_mismatch",
        "question val-0": "duplicate_question",
        "question val-914": "bad_box",
        "question val-915 object 3": "bad_box",
        "question val-916": "malformed_question",
        "question train-901": "malformed_question",
    }
    assert {key: q.code for key, q in by_key.items()} == expected
    assert len(quarantined) == len(expected)
    # every unit is accounted for: in = out + quarantined, and nothing read is missing
    for unit in ("question", "object"):
        assert stats[f"in_{unit}"] == total[unit]
        assert stats[f"out_{unit}"] + stats[f"q_{unit}"] == total[unit]
    assert stats["q_question"] == added["question"] - 1  # val-915 keeps its row
    assert stats["q_object"] == added["object"] - 5  # ... and five of its six objects
    assert stats["adj_mask_covers_no_pixel"] == 1 and stats["adj_polygon_part_dropped"] == 1

    cut = by_key["line 5"]
    assert cut.stage == "index" and cut.reason.startswith("val.jsonl: line 5: not valid JSON")
    assert cut.record == '{"annot_id": "val-901", "question": ["Is", [0]'
    assert cut.units == {"question": 1}
    assert "field 'img_fn' is missing" in by_key["question val-902"].reason
    assert by_key["question val-903"].record["answer_label"] == "2"
    assert (
        "field 'question'" in by_key["question val-904"].reason
        and "[99]" in by_key["question val-904"].reason
    )
    assert "field 'rationale_label': 4" in by_key["question val-905"].reason
    assert by_key["question val-905"].units == {"question": 1, "object": 4}
    assert by_key["question val-907"].file.endswith("truncated@0.json")
    assert "'names': 3" in by_key["question val-908"].reason
    assert by_key["question val-911"].reason.startswith("val.jsonl: line 16, question val-911")
    assert "field 'metadata_fn'" in by_key["question val-912"].reason
    assert "210x100" in by_key["question val-913"].reason
    assert by_key["question val-913"].stage == "build"
    assert "object 3" in by_key["question val-914"].reason
    assert by_key["question val-914"].units == {"question": 1, "object": 6}
    assert by_key["question val-915 object 3"].record["box"] == [50.0, 20.0, 40.0, 60.0, 0.91]
    assert by_key["question val-915 object 3"].units == {"object": 1}
    assert "only the test split" in by_key["question train-901"].reason


def test_regions_after_a_quarantined_object_move_up_in_the_markup(vcr_sample):
    add_bad_vcr_records(vcr_sample)
    rows = _rows_by_id(VcrBuilder(vcr_sample.root, vcr_sample.images, ["val"]))
    row = rows["vcr:val:val-915"]
    assert [r["id"] for r in row["regions"]] == ["0", "1", "2", "4", "5"]
    chair, cup = row["regions"][3:]
    assert cup["mask"] is None and cup["bbox"] == [10.0, 10.0, 30.0, 30.0]  # no pixel: box only
    assert chair["category"] == "chair" and chair["bbox"] == [60.0, 20.0, 120.0, 80.0]
    # the 2-point contour beside the chair's polygon has no area and is left out
    square = _polygon_mask([[[65, 25], [115, 25], [115, 75], [65, 75]]], 100, 200)
    np.testing.assert_array_equal(decode_rle(chair["mask"]), square)
    assert row["messages"][0]["content"].startswith("What is <region0> doing with the <region3>?")
    text = "".join(m["content"] for m in row["messages"])
    assert "<region4>" not in text and "<region5>" not in text


def test_a_truncated_last_line_is_quarantined_and_the_rest_is_kept(vcr_sample):
    val = vcr_sample.root / "val.jsonl"
    text = val.read_text()
    val.write_text(text[: len(text) - 40])
    index = VcrBuilder(vcr_sample.root, vcr_sample.images, ["val"]).index()
    [(split, rejected)] = index.rejected
    assert (split, rejected.code, rejected.key) == ("val", "bad_json", "line 4")
    assert "val.jsonl: line 4: not valid JSON" in rejected.reason
    assert "truncated" in rejected.reason
    assert [item.key for item in index.items["val"]] == ["val-0", "val-1", "val-2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{\n  "annot_id": "val-0",\n  "question": []\n}\n', "none of its 4 lines is valid JSON"),
        ("", "it holds no lines"),
    ],
)
def test_a_file_that_is_not_json_lines_is_a_clear_input_error(vcr_sample, content, message):
    (vcr_sample.root / "val.jsonl").write_text(content)
    with pytest.raises(BuilderInputError, match=rf"val\.jsonl: not a JSON Lines file.*{message}"):
        VcrBuilder(vcr_sample.root, vcr_sample.images, ["val"]).index()


def test_no_split_file_at_all_names_the_files_wanted(tmp_path):
    with pytest.raises(BuilderInputError, match=r"none of train\.jsonl, val\.jsonl, test\.jsonl"):
        VcrBuilder(tmp_path, tmp_path).index()


def test_cli_builds_a_dataset_that_loads_back(ray_cluster, vcr_sample, tmp_path, capsys):
    good = _input_units(vcr_sample)
    added = add_bad_vcr_records(vcr_sample)
    out = tmp_path / "out"
    assert cli_build("vcr", vcr_sample, out) == 0
    printed = capsys.readouterr().out
    questions, objects = good["question"], good["object"]
    assert (
        f"questions: {questions + added['question']} in = {questions + 1} out + "
        f"{added['question'] - 1} quarantined" in printed
    )
    assert (
        f"objects: {objects + added['object']} in = {objects + 5} out + "
        f"{added['object'] - 5} quarantined" in printed
    )
    assert "kept with a change:\n    1 x mask_covers_no_pixel\n    1 x polygon_part_dropped" in (
        printed
    )
    assert "quarantined 2 x build/path_escape" in printed
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert sorted(ds) == ["test", "train", "val"]
    assert ds["val"]["id"] == [f"vcr:val:val-{n}" for n in (0, 1, 2, 3, 915)]
    row = ds["val"][0]
    assert row["image"].size == (row["width"], row["height"])
    assert row["messages"][0]["content"].startswith("Does <region0> live in this house?")
    assert row["regions"][0]["mask"]["size"] == [row["height"], row["width"]]


def test_cli_help_names_the_expected_files(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "vcr", "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "{split}.jsonl" in printed and "vcr1images/" in printed and "--splits" in printed
