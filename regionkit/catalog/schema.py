"""The region record (DESIGN.md §3) as one `datasets.Features`, hence one explicit Arrow schema.

A row is one image of one split, its regions, and what is said about them. Writers build
`pyarrow` tables with `ARROW_SCHEMA` and never let pyarrow infer types, so every shard of every
dataset has the same schema and carries the `huggingface` metadata key that makes
`datasets.load_dataset` decode the `image` column as images.

Importing `datasets` takes about a second, so code that runs on every Ray worker builds rows
with `regionkit.catalog.records` and receives `ARROW_SCHEMA` from the driver instead.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from datasets import Features, Image, List, Value

RLE = {"size": List(Value("int32"), length=2), "counts": Value("string")}

REGION = {
    "id": Value("string"),
    "bbox": List(Value("float32"), length=4),
    "mask": RLE,
    "category": Value("string"),
    "attributes": List(Value("string")),
    "score": Value("float32"),
}

FEATURES = Features(
    {
        "id": Value("string"),
        "source": Value("string"),
        "split": Value("string"),
        "task": Value("string"),
        "image": Image(),
        "width": Value("int32"),
        "height": Value("int32"),
        "image_keys": List(Value("string")),
        "regions": List(REGION),
        "groundings": List({"text": Value("string"), "regions": List(Value("int32"))}),
        "captions": List(Value("string")),
        "relations": List(
            {"subject": Value("int32"), "predicate": Value("string"), "object": Value("int32")}
        ),
        "messages": List({"role": Value("string"), "content": Value("string")}),
        "provenance": {
            "builder": Value("string"),
            "builder_version": Value("string"),
            "generator": Value("string"),
            "prompt_id": Value("string"),
            "source_files": List(Value("string")),
        },
    }
)

ARROW_SCHEMA: pa.Schema = FEATURES.arrow_schema


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows in storage form -> an Arrow table with exactly `ARROW_SCHEMA`."""
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
