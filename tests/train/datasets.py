"""Rows written as a dataset folder the way the stream reads one: one Parquet shard of the
record schema under `data/`, listed in `manifest.json` (`splits -> <split> -> shards`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from regionkit.catalog.schema import ARROW_SCHEMA


def write_split(
    folder: Path, rows: list[dict], split: str = "train", row_group_size: int | None = None
) -> Path:
    """`folder` holding `rows` as its split `split` (row groups of `row_group_size` rows)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    file = f"data/{split}.parquet"
    table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
    pq.write_table(table, folder / file, row_group_size=row_group_size)
    shards = [{"file": file, "rows": len(rows)}]
    manifest = {"splits": {split: {"rows": len(rows), "shards": shards}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
