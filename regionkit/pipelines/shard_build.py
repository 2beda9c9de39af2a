"""Turning one shard into a Parquet file's bytes, its quarantine lines and its counts, without Ray.

This is the unit of work a Ray task runs; tests call it directly. Rows are validated here, so
the workers, not the driver, pay for it, and a row with problems goes to quarantine whole.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from regionkit.builders.base import Built, RegionBuilder, Rejected
from regionkit.catalog.validate import validate_row
from regionkit.pipelines.sharding import Shard
from regionkit.pipelines.stats import BuildStats

ROW_GROUP_SIZE = 256
"""Rows per Parquet row group: small enough that streaming readers hold little at a time."""


@dataclass
class ShardResult:
    """What building a shard produced; the driver writes it to disk."""

    shard_name: str
    parquet: bytes
    quarantine: list[dict[str, Any]]
    stats: BuildStats
    seconds: float = field(default=0.0, compare=False)


def encode_parquet(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """Rows in storage form -> Parquet bytes with `schema` (the record schema and its metadata).

    A shard whose every input was quarantined is written with no row group at all: readers
    (`datasets` among them) size batches from the first row group and fail on an empty one.
    """
    buffer = io.BytesIO()
    with pq.ParquetWriter(buffer, schema, compression="zstd") as writer:
        if rows:
            writer.write_table(
                pa.Table.from_pylist(rows, schema=schema), row_group_size=ROW_GROUP_SIZE
            )
    return buffer.getvalue()


def build_shard(builder: RegionBuilder, shard: Shard, schema: pa.Schema) -> ShardResult:
    """Build, validate and encode one shard with `schema` (the driver's `ARROW_SCHEMA`)."""
    started = time.perf_counter()
    stats = BuildStats()
    for item in shard.items:
        stats.units_in.update(item.units)
    rows: list[dict[str, Any]] = []
    quarantine: list[Rejected] = []
    seen: set[str] = set()
    for outcome in builder.build_items(list(shard.items)):
        if isinstance(outcome, Built):
            row = outcome.row
            if row["id"] in seen:
                raise RuntimeError(
                    f"builder {builder.source!r} produced row id {row['id']!r} twice "
                    f"in {shard.name}"
                )
            seen.add(row["id"])
            problems = validate_row(row)
            if problems:
                quarantine.append(
                    Rejected(
                        row["id"],
                        "invalid_row",
                        "; ".join(problems),
                        outcome.units,
                        row,
                        stage="validate",
                    )
                )
                continue
            rows.append(row)
            stats.units_out.update(outcome.units)
            stats.adjustments.update(outcome.adjustments)
        else:
            quarantine.append(outcome)
    for rejected in quarantine:
        stats.units_quarantined.update(rejected.units)
        stats.reasons[f"{rejected.stage}/{rejected.code}"] += 1
    stats.rows = len(rows)
    return ShardResult(
        shard.name,
        encode_parquet(rows, schema),
        [r.to_json(shard.split) for r in quarantine],
        stats,
        time.perf_counter() - started,
    )
