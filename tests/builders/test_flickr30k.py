"""The Flickr30k Entities builder on fixtures in the real layout, its quirks and broken files."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import pytest
from datasets import load_dataset

from regionkit.builders.base import BuilderInputError
from regionkit.builders.fields import RecordError
from regionkit.builders.flickr30k import (
    Flickr30kBuilder,
    parse_annotation,
    parse_sentence,
)
from regionkit.builders.samples.flickr30k import (
    UNRELATED_SENTENCE,
    Flickr30kSample,
    add_bad_flickr30k_records,
    write_flickr30k_sample,
)
from regionkit.cli import main

from .harness import build_all, build_through_shards, cli_build

UTF16_DOCTYPE = (
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
).encode("utf-16")


@pytest.fixture
def sample(tmp_path: Path) -> Flickr30kSample:
    return write_flickr30k_sample(tmp_path / "flickr30k", num_images=6, seed=3)


def _rows(sample: Flickr30kSample) -> dict[str, dict]:
    rows, _ = build_all(Flickr30kBuilder(sample.root, sample.images))
    return {row["id"].rsplit(":", 1)[1]: row for row in rows}


def _reference_sentence(line: str) -> tuple[str, list[tuple[str, list[str], str]]]:
    """Token by token, as the dataset's reader walks a line: (sentence, [(chain, types, text)])."""
    words, phrases, current = [], [], None
    for token in line.split():
        if current is None and token.startswith("[/EN#"):
            _, header, *types = token.split("/")
            current = (header[3:], types, [])
            continue
        closing = current is not None and token.endswith("]")
        word = token[:-1] if closing else token
        words.append(word)
        if current is not None:
            current[2].append(word)
        if closing:
            phrases.append((str(int(current[0])), current[1], " ".join(current[2])))
            current = None
    return " ".join(words), phrases


def _reference_objects(path: Path) -> list[tuple[list[str], list[int] | None]]:
    root = ElementTree.parse(path).getroot()
    objects = []
    for element in root.iter("object"):
        box = element.find("bndbox")
        corners = (
            None
            if box is None
            else [int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        )
        objects.append(([n.text for n in element.findall("name")], corners))
    return objects


def test_rows_match_an_independent_reading_of_the_files(sample):
    rows = _rows(sample)
    assert sorted(rows) == sorted(i for ids in sample.splits.values() for i in ids)
    for image_id, row in rows.items():
        lines = [
            line
            for line in (sample.root / "Sentences" / f"{image_id}.txt").read_text().split("\n")
            if line and line != UNRELATED_SENTENCE
        ]
        parsed = [_reference_sentence(line) for line in lines]
        assert row["captions"] == [sentence for sentence, _ in parsed]
        objects = _reference_objects(sample.root / "Annotations" / f"{image_id}.xml")
        boxed = [(k, names, c) for k, (names, c) in enumerate(objects) if c is not None]
        assert [r["id"] for r in row["regions"]] == [str(k) for k, _, _ in boxed]
        for region, (_, names, corners) in zip(row["regions"], boxed, strict=True):
            xmin, ymin, xmax, ymax = corners
            expected = [xmin - 1, ymin - 1, min(xmax, row["width"]), min(ymax, row["height"])]
            assert region["bbox"] == expected
            assert region["mask"] is None and region["attributes"] == []
            types = {t for _, ps in parsed for chain, ts, _ in ps if chain in names for t in ts}
            assert region["category"] == "/".join(sorted(types))
        chain_regions: dict[str, list[int]] = {}
        for index, (_, names, _) in enumerate(boxed):
            for name in names:
                chain_regions.setdefault(name, []).append(index)
        expected_groundings = [
            {"text": text, "regions": chain_regions[chain]}
            for _, phrases in parsed
            for chain, _, text in phrases
            if chain in chain_regions
        ]
        assert row["groundings"] == expected_groundings
        assert row["image_keys"] == [f"flickr30k:{image_id}", f"flickr:{image_id}"]
        assert row["image"]["path"] == str(sample.images.resolve() / f"{image_id}.jpg")
        assert row["provenance"]["source_files"] == [
            f"{row['split']}.txt",
            f"Sentences/{image_id}.txt",
            f"Annotations/{image_id}.xml",
        ]


def test_rows_are_split_by_the_split_files_in_numeric_id_order(sample):
    rows, _ = build_all(Flickr30kBuilder(sample.root, sample.images))
    for split, ids in sample.splits.items():
        keys = [r["id"].rsplit(":", 1)[1] for r in rows if r["split"] == split]
        assert keys == sorted(ids, key=int)
    assert [r["id"] for r in rows if r["split"] == "val"] == [
        f"flickr30k:val:{sample.splits['val'][0]}"
    ]
    train = sample.splits["train"]
    assert sorted(train, key=int) != sorted(train)  # ids of different lengths: 36979, 1000092795
    assert list(train) != sorted(train, key=int)  # the split file itself is not sorted


def test_captions_drop_the_markup_and_keep_the_tokens(sample):
    row = _rows(sample)[sample.splits["val"][0]]
    assert row["captions"] == [
        "Two young guys with shaggy hair look at their hands while hanging out in the yard .",
        "Two young , White males are outside near green shirts",  # no trailing " ." in the file
        "A man in a blue shirt standing in a garden .",
        "Two friends enjoy time spent together at the moment .",
        "Their hands hold something for a while",
    ]


def test_a_file_ending_with_an_empty_line_has_five_captions(sample):
    rows = _rows(sample)
    ending = {
        image_id: (sample.root / "Sentences" / f"{image_id}.txt").read_text().endswith("\n\n")
        for image_id in rows
    }
    assert any(ending.values()) and not all(ending.values())
    unrelated = sample.unrelated_image
    for image_id in rows:
        if ending[image_id]:
            assert len(rows[image_id]["captions"]) == (4 if image_id == unrelated else 5)


def _grounding(row: dict, text: str) -> list[int]:
    (regions,) = [g["regions"] for g in row["groundings"] if g["text"] == text]
    return regions


def test_a_box_with_two_names_is_one_region_that_both_chains_ground_to(sample):
    row = _rows(sample)[sample.splits["val"][0]]
    shared = [r["id"] for r in row["regions"]].index("4")  # object 4 names chains guys and man
    assert shared == 3  # object 3 (the scene) is not a region
    assert _grounding(row, "Two young guys") == [0, shared]
    assert _grounding(row, "Two friends") == [0, shared]  # the chain recurs in 3 sentences
    assert _grounding(row, "A man") == [shared]
    assert row["regions"][shared]["category"] == "people"


def test_a_chain_with_two_boxes_grounds_to_both_and_merges_its_types(sample):
    row = _rows(sample)[sample.splits["val"][0]]
    assert _grounding(row, "their hands") == [1, 2]
    assert _grounding(row, "Their hands") == [1, 2]
    # the chain is `other` in sentence 1 and `people` in sentence 5
    assert [row["regions"][i]["category"] for i in (1, 2)] == ["other/people"] * 2


def test_a_multi_type_phrase_gives_its_region_both_types(sample):
    row = _rows(sample)[sample.splits["val"][0]]
    assert row["regions"][_grounding(row, "shaggy hair")[0]]["category"] == "bodyparts/people"


def test_notvisual_scene_and_boxless_phrases_stay_in_captions_without_grounding(sample):
    row = _rows(sample)[sample.splits["val"][0]]
    texts = {g["text"] for g in row["groundings"]}
    for phrase in ("the moment", "something", "a while", "the yard", "a garden", "time"):
        assert phrase not in texts
        assert any(phrase in caption for caption in row["captions"])
    assert "3" not in {r["id"] for r in row["regions"]}  # scene object
    assert "7" not in {r["id"] for r in row["regions"]}  # nobndbox object


def test_corners_are_one_based_inclusive_and_clipped_to_the_image(sample):
    image_id = sample.splits["val"][0]
    row = _rows(sample)[image_id]
    objects = _reference_objects(sample.root / "Annotations" / f"{image_id}.xml")
    xmin, ymin, xmax, ymax = objects[0][1]
    assert xmin == 1 and row["regions"][0]["bbox"] == [0.0, ymin - 1.0, xmax, ymax]
    assert objects[6][1][3] == row["height"] + 1  # the file reaches a pixel past the bottom
    assert row["regions"][5]["id"] == "6" and row["regions"][5]["bbox"][3] == row["height"]


@pytest.mark.parametrize(
    ("line", "caption", "phrases"),
    [
        (
            "[/EN#255545/bodyparts/people a man 's arm] holds [/EN#0/notvisual it]",
            "a man 's arm holds it",
            [("255545", ("bodyparts", "people"), "a man 's arm"), ("0", ("notvisual",), "it")],
        ),
        ("[/EN#7/other a 1/2  inch] pipe", "a 1/2 inch pipe", [("7", ("other",), "a 1/2 inch")]),
        ("No markup at all .", "No markup at all .", []),
    ],
)
def test_parse_sentence(line, caption, phrases):
    text, parsed = parse_sentence(line)
    assert text == caption
    assert [(p.chain, p.types, p.text) for p in parsed] == phrases


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[/EN#5/people A man in the park .", r"'\[' at column 1 opens no well-formed"),
        ("A man] stands .", r"'\]' at column 6 closes no phrase"),
        ("[/EN#5/people a [/EN#6/other b] c]", r"'\[' at column 1"),
        ("[/EN#x/people a man]", r"'\[' at column 1"),
        ("[/EN#5/people ] walks", "has no words"),
    ],
)
def test_unbalanced_markup_is_a_record_problem(line, message):
    with pytest.raises(RecordError, match=message) as raised:
        parse_sentence(line)
    assert raised.value.code == "bad_markup"


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b'<?xml version="1.0" encoding="bogus"?><annotation/>', "malformed_xml", "unknown enc"),
        (b"<annotation><size>", "malformed_xml", "no element found"),
        (b"<voc><size/></voc>", "malformed_xml", "root element is <voc>"),
        (b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><annotation/>', "unsafe_xml", "DOCTYPE"),
        (UTF16_DOCTYPE, "unsafe_xml", "DOCTYPE"),  # a byte search would miss it
    ],
)
def test_unusable_xml_is_a_record_problem_naming_the_file(tmp_path, data, code, message):
    path = tmp_path / "1.xml"
    path.write_bytes(data)
    with pytest.raises(RecordError, match=rf"^Annotations/1\.xml: .*{message}") as raised:
        parse_annotation(path, "Annotations/1.xml")
    assert raised.value.code == code


def test_splits_default_to_the_files_present_and_can_be_picked(sample):
    rows, _ = build_all(Flickr30kBuilder(sample.root, sample.images, ["val"]))
    assert [r["id"] for r in rows] == [f"flickr30k:val:{sample.splits['val'][0]}"]
    (sample.root / "test.txt").unlink()
    builder = Flickr30kBuilder(sample.root, sample.images)
    assert sorted(builder.index().items) == ["train", "val"]
    assert [p.name for p in builder.source_files()] == [
        "train.txt",
        "val.txt",
        "UNRELATED_CAPTIONS",
    ]
    with pytest.raises(BuilderInputError, match=r"\['test'\] asked for with --splits"):
        Flickr30kBuilder(sample.root, sample.images, ["train", "test"]).index()


def test_unrelated_captions_are_quarantined(sample):
    rows, rejected = build_all(Flickr30kBuilder(sample.root, sample.images))
    (quarantined,) = rejected
    image_id = sample.unrelated_image
    assert quarantined.code == "unrelated_caption" and quarantined.units == {"caption": 1}
    assert quarantined.record == {"image_id": image_id, "line": 5, "text": UNRELATED_SENTENCE}
    assert (
        "UNRELATED_CAPTIONS" in quarantined.reason
        and f"Sentences/{image_id}.txt" in quarantined.reason
    )
    (row,) = [r for r in rows if r["id"].endswith(f":{image_id}")]
    assert len(row["captions"]) == 4 and UNRELATED_SENTENCE not in row["captions"]


def _file_units(sample: Flickr30kSample) -> Counter:
    """Images the split files list, their caption lines, and their boxed and box-less objects."""
    units: Counter = Counter()
    for image_id in (i for ids in sample.splits.values() for i in ids):
        units["image"] += 1
        text = (sample.root / "Sentences" / f"{image_id}.txt").read_text()
        units["caption"] += sum(1 for line in text.split("\n") if line)
        for _, corners in _reference_objects(sample.root / "Annotations" / f"{image_id}.xml"):
            units["nobox" if corners is None else "box"] += 1
    return units


def test_every_bad_record_is_quarantined_with_its_reason(sample):
    host = sample.splits["train"][0]
    lines = (sample.root / "Sentences" / f"{host}.txt").read_text().count("\n")
    good = _file_units(sample)
    added = add_bad_flickr30k_records(sample)
    builder = Flickr30kBuilder(sample.root, sample.images)
    quarantined, stats = build_through_shards(builder, items_per_shard=2)
    by_key = {q.key: q for q in quarantined}
    expected = {
        f"image '{host}' (train.txt line 5)": "duplicate_image",
        "image '../x' (train.txt line 6)": "bad_image_id",
        "image 990000000": "missing_sentences",
        "image 990000001": "missing_annotation",
        "image 990000002": "malformed_xml",
        "image 990000003": "unsafe_xml",
        "image 990000004": "bad_size",
        "image 990000005": "missing_image",
        "image 990000006": "image_size_mismatch",
        f"caption {host}/{lines + 1}": "bad_markup",
        f"caption {host}/{lines + 2}": "bad_markup",
        f"object {host}/8": "malformed_box",
        f"object {host}/9": "malformed_box",
        f"object {host}/10": "empty_box",
        f"object {host}/11": "missing_name",
        f"object {host}/12": "malformed_object",
    }
    unrelated = [q for q in quarantined if q.code == "unrelated_caption"]
    assert {key: by_key[key].code for key in expected} == expected
    assert len(quarantined) == len(expected) + len(unrelated)

    assert "Annotations/990000002.xml: not well-formed XML" in by_key["image 990000002"].reason
    assert by_key["image 990000002"].record["xml"].startswith("<annotation>")
    assert by_key["image 990000003"].units == {"image": 1, "caption": 5, "box": 0, "nobox": 0}
    assert by_key["image 990000005"].units == {"image": 1, "caption": 5, "box": 6, "nobox": 2}
    assert by_key["image 990000005"].stage == "build" and by_key["image 990000000"].stage == "index"
    assert len(by_key["image 990000005"].record["objects"]) == 8
    assert "field 'bndbox/ymax' is missing" in by_key[f"object {host}/8"].reason
    assert "'12.5' is not an integer" in by_key[f"object {host}/9"].reason
    assert by_key[f"object {host}/9"].record["bndbox"]["xmin"] == "12.5"
    assert by_key[f"object {host}/12"].units == {"nobox": 1}
    assert by_key[f"caption {host}/{lines + 2}"].record["text"].startswith("A man]")
    assert "field 'size/width' is missing" in by_key["image 990000004"].reason

    host_row = [r for r in build_all(builder)[0] if r["id"].endswith(f":{host}")]
    assert len(host_row) == 1 and len(host_row[0]["captions"]) == 5  # the rest of it is kept
    for unit in ("image", "caption", "box", "nobox"):
        assert stats[f"in_{unit}"] == good[unit] + added[unit]
        assert stats[f"out_{unit}"] + stats[f"q_{unit}"] == stats[f"in_{unit}"]
        assert stats[f"q_{unit}"] == added[unit] + (len(unrelated) if unit == "caption" else 0)


def test_unusable_index_files_are_clear_errors(sample):
    (sample.root / "val.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(BuilderInputError, match=r"val\.txt: not a text file of image ids"):
        Flickr30kBuilder(sample.root, sample.images).index()
    (sample.root / "UNRELATED_CAPTIONS").write_text("# format\n123 five\n")
    with pytest.raises(BuilderInputError, match=r"UNRELATED_CAPTIONS: line 2: '123 five'"):
        Flickr30kBuilder(sample.root, sample.images, ["train"]).index()


def test_missing_files_and_folders_are_named(sample, tmp_path):
    with pytest.raises(BuilderInputError, match=r"train\.txt: file not found.*'flickr30k'"):
        Flickr30kBuilder(tmp_path / "empty", sample.images).index()
    (sample.root / "Sentences").rename(sample.root / "sentences")
    with pytest.raises(BuilderInputError, match=r"Sentences: folder not found.*'flickr30k'"):
        Flickr30kBuilder(sample.root, sample.images).index()


def test_the_build_is_deterministic(sample):
    first, _ = build_all(Flickr30kBuilder(sample.root, sample.images))
    again, _ = build_all(Flickr30kBuilder(sample.root, sample.images))
    assert first == again


def test_cli_builds_a_dataset_that_loads(ray_cluster, sample, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_build("flickr30k", sample, out) == 0
    printed = capsys.readouterr().out
    assert "images: 6 in = 6 out + 0 quarantined" in printed
    assert "captions: 30 in = 29 out + 1 quarantined" in printed
    assert main(["inspect", str(out)]) == 0
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert sorted(ds) == ["test", "train", "val"] and ds["train"].num_rows == 4
    row = ds["val"][0]
    assert row["image"].size == (row["width"], row["height"])
    assert row["groundings"][0] == {"text": "Two young guys", "regions": [0, 3]}


def test_cli_help_lists_the_expected_files(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["build", "flickr30k", "--help"])
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    for pattern in ("Sentences/*.txt", "Annotations/*.xml", "{split}.txt", "flickr30k-images/"):
        assert pattern in printed
