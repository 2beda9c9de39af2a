"""The record schema survives Parquet and `datasets.load_dataset` unchanged."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from datasets import Features, load_dataset
from PIL import Image

from regionkit.catalog.masks import boxes_to_rle
from regionkit.catalog.records import make_region, make_row
from regionkit.catalog.schema import ARROW_SCHEMA, FEATURES, rows_to_table


def _row(image_path: str) -> dict:
    row = make_row(
        source="grefcoco",
        split="testA",
        native_key="909",
        image_path=image_path,
        width=8,
        height=6,
        builder="grefcoco",
        builder_version="1.0",
        source_files=["grefs(unc).json"],
        image_keys=["coco:909"],
        regions=[
            make_region("3007", [1, 1, 4, 3], boxes_to_rle([[1, 1, 4, 3]], 6, 8), "dog", ["crowd"]),
            make_region("vg-5", [0, 0, 2, 2], None, None, [], score=0.75),
        ],
        groundings=[
            {"text": "both animals", "regions": [0, 1]},
            {"text": "the cat", "regions": []},
        ],
        captions=["two things"],
        relations=[{"subject": 0, "predicate": "near", "object": 1}],
        messages=[
            {"role": "user", "content": "what is <region0>?"},
            {"role": "assistant", "content": "<seg0> and <rej>"},
        ],
        task="gres",
    )
    return row


def test_parquet_round_trip_keeps_schema_and_values(tmp_path):
    image = tmp_path / "img.png"
    Image.new("RGB", (8, 6), (9, 9, 9)).save(image)
    row = _row(str(image))
    pq.write_table(rows_to_table([row]), tmp_path / "rows.parquet")
    table = pq.read_table(tmp_path / "rows.parquet")
    # Parquet renames list children ("item" -> "element"); the types and metadata must survive
    assert Features.from_arrow_schema(table.schema) == FEATURES
    assert table.schema.metadata == ARROW_SCHEMA.metadata
    back = table.to_pylist()[0]
    assert back["regions"][1]["mask"] is None
    assert back["regions"][1]["score"] == 0.75
    assert back["groundings"][1]["regions"] == []
    assert back["regions"][0]["bbox"] == [1.0, 1.0, 4.0, 3.0]
    assert back == row


def test_load_dataset_decodes_images_and_keeps_features(tmp_path):
    image = tmp_path / "img.png"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(image)
    (tmp_path / "data").mkdir()
    pq.write_table(
        rows_to_table([_row(str(image))]), tmp_path / "data" / "train-00000-of-00001.parquet"
    )
    ds = load_dataset(str(tmp_path / "data"), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert ds.features == FEATURES
    example = ds[0]
    assert example["image"].size == (8, 6)
    assert np.asarray(example["image"])[0, 0].tolist() == [200, 10, 10]
    assert example["regions"][0]["mask"]["size"] == [6, 8]
    assert example["groundings"][0]["regions"] == [0, 1]
    assert example["id"] == "grefcoco:testA:909"
