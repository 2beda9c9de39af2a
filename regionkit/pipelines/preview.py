"""`regionkit show`: a PNG contact sheet of rows with their masks, boxes and texts drawn on.

Looking at a few rows catches what counters cannot: masks shifted by an off-by-one, boxes in the
wrong convention, groundings pointing at the wrong region.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from regionkit.catalog.masks import decode_rle
from regionkit.pipelines.inspect import read_manifest

CELL_WIDTH = 360
TEXT_LINES = 6
TEXT_WRAP = 52
LINE_HEIGHT = 13
MASK_ALPHA = 0.45
COLORS = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
]


def read_rows(path: Path, n: int, split: str | None = None) -> list[dict[str, Any]]:
    """The first `n` rows of the dataset at `path` (of one split, or of each split in turn)."""
    manifest = read_manifest(path)
    rows: list[dict[str, Any]] = []
    for name, entry in manifest["splits"].items():
        if split is not None and name != split:
            continue
        for shard in entry["shards"]:
            for batch in pq.ParquetFile(path / shard["file"]).iter_batches(batch_size=n):
                rows += batch.to_pylist()
                if len(rows) >= n:
                    return rows[:n]
    if split is not None and split not in manifest["splits"]:
        raise ValueError(f"no split {split!r}; the dataset has {list(manifest['splits'])}")
    return rows


def _open_image(image: dict[str, Any]) -> Image.Image:
    if image.get("bytes"):
        return Image.open(io.BytesIO(image["bytes"])).convert("RGB")
    return Image.open(image["path"]).convert("RGB")


def _texts(row: dict[str, Any]) -> list[str]:
    texts = [f"{row['id']}  [{row['task']}]"]
    texts += [f'"{g["text"]}" -> {g["regions"] or "no target"}' for g in row["groundings"]]
    texts += [f"caption: {c}" for c in row["captions"]]
    texts += [f"{m['role']}: {m['content']}" for m in row["messages"]]
    if len(texts) == 1:
        texts.append(", ".join(f"{i}:{r['category']}" for i, r in enumerate(row["regions"])))
    return texts


def render_row(row: dict[str, Any], font: ImageFont.ImageFont) -> Image.Image:
    """One row drawn at `CELL_WIDTH`: masks tinted, boxes outlined and numbered, texts below."""
    image = _open_image(row["image"])
    overlay = np.asarray(image, dtype=np.float32)
    for i, region in enumerate(row["regions"]):
        if region["mask"] is not None:
            mask = decode_rle(region["mask"]).astype(bool)
            color = np.array(COLORS[i % len(COLORS)], dtype=np.float32)
            overlay[mask] = (1 - MASK_ALPHA) * overlay[mask] + MASK_ALPHA * color
    image = Image.fromarray(overlay.astype(np.uint8))
    scale = CELL_WIDTH / image.width
    image = image.resize((CELL_WIDTH, max(1, round(image.height * scale))))
    pen = ImageDraw.Draw(image)
    for i, region in enumerate(row["regions"]):
        x1, y1, x2, y2 = (v * scale for v in region["bbox"])
        color = COLORS[i % len(COLORS)]
        pen.rectangle([x1, y1, x2, y2], outline=color, width=2)
        pen.text((x1 + 2, y1 + 1), f"{i} {region['category'] or ''}", fill=color, font=font)
    lines = [line for text in _texts(row) for line in textwrap.wrap(text, TEXT_WRAP)][:TEXT_LINES]
    cell = Image.new("RGB", (CELL_WIDTH, image.height + TEXT_LINES * LINE_HEIGHT + 6), "white")
    cell.paste(image, (0, 0))
    pen = ImageDraw.Draw(cell)
    for k, line in enumerate(lines):
        pen.text((4, image.height + 3 + k * LINE_HEIGHT), line, fill=(20, 20, 20), font=font)
    return cell


def render_preview(
    path: Path, out: Path, n: int = 8, split: str | None = None, columns: int = 4
) -> Path:
    """Draw the first `n` rows of the dataset at `path` into a grid PNG at `out`."""
    rows = read_rows(path, n, split)
    if not rows:
        raise ValueError(f"{path}: no rows to show")
    font = ImageFont.load_default()
    cells = [render_row(row, font) for row in rows]
    columns = min(columns, len(cells))
    grid_rows = [cells[i : i + columns] for i in range(0, len(cells), columns)]
    heights = [max(c.height for c in line) for line in grid_rows]
    sheet = Image.new("RGB", (columns * CELL_WIDTH, sum(heights)), (235, 235, 235))
    top = 0
    for line, height in zip(grid_rows, heights, strict=True):
        for k, cell in enumerate(line):
            sheet.paste(cell, (k * CELL_WIDTH, top))
        top += height
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
