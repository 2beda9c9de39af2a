"""The last step: rows into the shard's Parquet file, written where the worker runs.

Rows arrive in batches and leave in row groups of `ROW_GROUP_SIZE`, so a shard of any size is
written in bounded memory, with the same bytes whatever the batches were. The file is written
under a temporary name on the output filesystem and renamed into place when the shard closes:
readers see the whole file or none, and a worker that dies leaves only a temporary file, which
the next attempt or run sweeps. On a cluster `out` must be a filesystem every node sees.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from regionkit.builders.base import Built
from regionkit.pipelines.step import ShardContext, Step, StepResult
from regionkit.pipelines.storage import sha256_file, temporary_path

ROW_GROUP_SIZE = 256
"""Rows per Parquet row group: small enough that streaming readers hold little at a time."""


class ParquetWriter(Step):
    """Writes a shard's rows with `schema` (the record schema and its Hub metadata).

    A shard whose every row was refused is written with no row group at all: readers (`datasets`
    among them) size batches from the first row group and fail on an empty one.

    Args:
        schema: the Arrow schema of the rows, never inferred; default the record schema. It
            travels with the step, so a worker never imports `datasets` (its costliest import)
            to rebuild it.
        compression: Parquet compression codec.
    """

    name = "write"
    version = "1"

    def __init__(self, schema: pa.Schema | None = None, compression: str = "zstd") -> None:
        if schema is None:
            from regionkit.catalog.schema import ARROW_SCHEMA

            schema = ARROW_SCHEMA
        self.schema = schema
        self.compression = compression
        self._context: ShardContext | None = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[dict[str, Any]] = []
        self._rows = 0
        self._temporary: Path | None = None

    def params(self) -> dict[str, Any]:
        return {"compression": self.compression, "row_group_size": ROW_GROUP_SIZE}

    def open(self, context: ShardContext) -> None:
        self._context = context
        final = context.out / context.data_path
        final.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = temporary_path(final)
        self._writer = pq.ParquetWriter(self._temporary, self.schema, compression=self.compression)
        self._pending, self._rows = [], 0

    def process(self, rows: list[Built]) -> StepResult:
        self._pending += [built.row for built in rows]
        while len(self._pending) >= ROW_GROUP_SIZE:
            self._flush(self._pending[:ROW_GROUP_SIZE])
            self._pending = self._pending[ROW_GROUP_SIZE:]
        return StepResult(rows)

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        self._writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))
        self._rows += len(rows)

    def close(self) -> dict[str, Any]:
        """Write the last row group, close the file and rename it into place."""
        if self._pending:
            self._flush(self._pending)
            self._pending = []
        self._writer.close()
        with open(self._temporary, "rb") as file:
            os.fsync(file.fileno())
        final = self._context.out / self._context.data_path
        digest = sha256_file(self._temporary)
        size = self._temporary.stat().st_size
        os.replace(self._temporary, final)
        return {
            "file": self._context.data_path,
            "rows": self._rows,
            "bytes": size,
            "sha256": digest,
        }
