"""Shards rewritten with their images' bytes, for a Hub where local paths mean nothing.

A shard is read a row group at a time and written to the staging folder with each row's image
file read into `image.bytes` and `image.path` cut to the file's name (which keeps its
extension for decoding), the same schema, codec and row groups as the build: memory holds one
row group, and the same build gives the same bytes. Before a shard is used its source is
checked against the manifest (sha256 and rows), and the written shard against its source (the
same ids in the same order, every image file read and not empty); a shard whose source is
unchanged since it was embedded is not embedded again, so an interrupted publish goes on where
it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from regionkit.pipelines.storage import sha256_file, temporary_path, write_text_atomic

RECORD = "embedded.json"
"""In the staging folder: source shard sha256 -> embedded shard sha256, per shard file."""


class PublishError(ValueError):
    """A dataset that cannot be published as asked; the message says why and what to do."""


def shard_has_paths(path: Path) -> bool:
    """Whether a shard's images are paths to local files rather than bytes."""
    images = pq.ParquetFile(path).read_row_group(0, columns=["image"]).column("image")
    first = images[0].as_py() if len(images) else None
    return first is not None and first.get("bytes") is None


def embed_shard(source: Path, entry: dict[str, Any], staged: Path, done: dict[str, Any]) -> bool:
    """Write `source` (a shard the manifest lists as `entry`) with image bytes to `staged`,
    unless `done` shows it was embedded from the same source already; whether it wrote."""
    digest = sha256_file(source)
    if digest != entry["sha256"]:
        raise PublishError(
            f"{source}: sha256 {digest[:12]}... differs from the manifest's "
            f"{entry['sha256'][:12]}...: the folder changed after its build; rebuild it"
        )
    previous = done.get(entry["file"])
    unchanged = previous and previous["source"] == digest and staged.exists()
    if unchanged and sha256_file(staged) == previous["embedded"]:
        return False
    reader = pq.ParquetFile(source)
    staged.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(staged)
    rows = images = image_bytes = 0
    try:
        with pq.ParquetWriter(partial, reader.schema_arrow, compression="zstd") as writer:
            for group in range(reader.num_row_groups):
                table = _with_bytes(reader.read_row_group(group), source)
                writer.write_table(table)
                rows += table.num_rows
                sizes = [len(image["bytes"]) for image in table.column("image").to_pylist()]
                images, image_bytes = images + len(sizes), image_bytes + sum(sizes)
        if rows != entry["rows"]:
            raise PublishError(f"{source}: {rows} rows, the manifest says {entry['rows']}")
        _check_same_ids(source, partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, staged)
    done[entry["file"]] = {
        "source": digest,
        "embedded": sha256_file(staged),
        "bytes": staged.stat().st_size,
        "images": images,
        "image_bytes": image_bytes,
    }
    return True


def _with_bytes(table: pa.Table, shard: Path) -> pa.Table:
    images = []
    for row_id, image in zip(
        table.column("id").to_pylist(), table.column("image").to_pylist(), strict=True
    ):
        if image["bytes"] is not None:
            images.append(image)
            continue
        path = Path(image["path"])
        try:
            data = path.read_bytes()
        except OSError as error:
            raise PublishError(
                f"{shard}: row {row_id}: field image.path: cannot read {path} ({error.strerror})"
            ) from None
        if not data:
            raise PublishError(f"{shard}: row {row_id}: field image.path: {path} is empty")
        images.append({"bytes": data, "path": path.name})
    column = pa.array(images, type=table.schema.field("image").type)
    return table.set_column(table.schema.get_field_index("image"), "image", column)


def _check_same_ids(source: Path, embedded: Path) -> None:
    """The embedded shard holds the source's rows in its order, a row group at a time."""
    before, after = pq.ParquetFile(source), pq.ParquetFile(embedded)
    if before.num_row_groups != after.num_row_groups:
        raise PublishError(f"{embedded}: row groups differ from {source} after embedding")
    for group in range(before.num_row_groups):
        ids = before.read_row_group(group, columns=["id"]).column("id")
        if not ids.equals(after.read_row_group(group, columns=["id"]).column("id")):
            raise PublishError(f"{embedded}: rows differ from {source} after embedding")


def read_record(staging: Path) -> dict[str, Any]:
    path = staging / RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def write_record(staging: Path, done: dict[str, Any]) -> None:
    write_text_atomic(staging / RECORD, json.dumps(done, indent=2, sort_keys=True) + "\n")
