"""`regionkit show`: a PNG contact sheet of rows with their masks, boxes and texts drawn on.

Looking at a few rows catches what counters cannot: masks shifted by an off-by-one, boxes in the
wrong convention, groundings pointing at the wrong region.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from regionkit.catalog.masks import decode_rle
from regionkit.pipelines.inspect import read_manifest

CELL_WIDTH = 360
TEXT_LINES = 6
TEXT_MARGIN = 4
LABEL_PAD = 1
FONT_SIZE = 11
MASK_ALPHA = 0.45
ELLIPSIS = "…"
BLACK = (0, 0, 0)
WHITE = (255, 255, 255)
# WCAG relative luminance at which black and white text contrast equally with the plate.
EQUAL_CONTRAST_LUMINANCE = (1.05 * 0.05) ** 0.5 - 0.05
FONT_FILE = Path("fonts") / "ttf" / "DejaVuSans.ttf"
"""DejaVu Sans as matplotlib ships it: Latin, Greek and Cyrillic on every machine with the
package, so "café" never draws as "caf" and a box, and a sheet looks the same wherever it is
drawn. Pillow's own bundled font (Aileron) covers ASCII only."""
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

Color = tuple[int, int, int]


def _split_rows(path: Path, shards: list[dict[str, Any]], batch: int) -> Iterator[dict[str, Any]]:
    for shard in shards:
        for record_batch in pq.ParquetFile(path / shard["file"]).iter_batches(batch_size=batch):
            yield from record_batch.to_pylist()


def _round_robin(streams: list[Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """One item of each stream in turn, dropping streams as they run out."""
    while streams:
        for stream in list(streams):
            item = next(stream, None)
            if item is None:
                streams.remove(stream)
            else:
                yield item


def read_rows(path: Path, n: int, split: str | None = None) -> list[dict[str, Any]]:
    """`n` rows of the dataset at `path`: the first of `split`, or of every split in turn.

    Taking turns shows val and test rows too, not only the first split's.
    """
    splits = read_manifest(path)["splits"]
    if split is not None and split not in splits:
        raise ValueError(f"no split {split!r}; the dataset has {list(splits)}")
    names = [split] if split is not None else list(splits)
    batch = max(1, math.ceil(n / max(1, len(names))))
    streams = [_split_rows(path, splits[name]["shards"], batch) for name in names]
    return list(islice(_round_robin(streams), max(n, 0)))


def preview_font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    """The sheet's font (`FONT_FILE`) at `size` pixels."""
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / FONT_FILE), size)


def fit_text(text: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """`text` if it fits in `width` pixels, else its longest prefix that fits with "…" added."""
    if font.getlength(text) <= width:
        return text
    for end in range(len(text) - 1, 0, -1):
        cut = text[:end].rstrip() + ELLIPSIS
        if font.getlength(cut) <= width:
            return cut
    return ELLIPSIS


def _pieces(word: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """`word` cut between characters into runs that fit `width` (one run when it fits whole)."""
    if font.getlength(word) <= width:
        return [word]
    pieces = [""]
    for char in word:
        if pieces[-1] and font.getlength(pieces[-1] + char) > width:
            pieces.append(char)
        else:
            pieces[-1] += char
    return pieces


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy word wrap by pixel width, so wide letters cannot overflow the cell."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        for piece in _pieces(word, font, width):
            joined = f"{line} {piece}" if line else piece
            if font.getlength(joined) <= width:
                line = joined
            else:
                lines.append(line)
                line = piece
    return [*lines, line] if line else lines


def wrap_text(
    texts: list[str], font: ImageFont.FreeTypeFont, width: float, max_lines: int
) -> list[str]:
    """`texts` wrapped to `width` pixels in at most `max_lines`; a cut ends with "…" to show it."""
    lines = [line for text in texts for line in _wrap(text, font, width)]
    if len(lines) <= max_lines:
        return lines
    return [*lines[: max_lines - 1], fit_text(lines[max_lines - 1] + ELLIPSIS, font, width)]


def _luminance(color: Color) -> float:
    """WCAG relative luminance of an sRGB colour."""
    linear = [v / 255 / 12.92 if v <= 10 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in color]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _text_color(plate: Color) -> Color:
    """Black or white, whichever contrasts more with `plate`."""
    return BLACK if _luminance(plate) > EQUAL_CONTRAST_LUMINANCE else WHITE


def draw_label(
    image: Image.Image,
    xy: tuple[float, float],
    text: str,
    plate: Color,
    font: ImageFont.FreeTypeFont,
) -> None:
    """`text` on a filled `plate` at `xy`, moved inside the image and cut with "…" to fit it.

    Text in the box's own colour vanishes over that region's tinted mask; a plate cannot.
    """
    width, height = image.size
    text = fit_text(text, font, width - 2 * LABEL_PAD)
    left, top, right, bottom = font.getbbox(text)
    plate_width, plate_height = right - left + 2 * LABEL_PAD, bottom - top + 2 * LABEL_PAD
    x = max(0, min(xy[0], width - plate_width))
    y = max(0, min(xy[1], height - plate_height))
    pen = ImageDraw.Draw(image)
    pen.rectangle([x, y, x + plate_width - 1, y + plate_height - 1], fill=plate)
    pen.text((x + LABEL_PAD - left, y + LABEL_PAD - top), text, fill=_text_color(plate), font=font)


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


def cell_lines(row: dict[str, Any], font: ImageFont.FreeTypeFont) -> list[str]:
    """The text lines drawn under a row's image."""
    return wrap_text(_texts(row), font, CELL_WIDTH - 2 * TEXT_MARGIN, TEXT_LINES)


def render_row(row: dict[str, Any], font: ImageFont.FreeTypeFont) -> Image.Image:
    """One row drawn at `CELL_WIDTH`: masks tinted, boxes outlined and labelled, texts below.

    Regions without a mask (boxes only) get their outline and label alone.
    """
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
    boxes = [[v * scale for v in region["bbox"]] for region in row["regions"]]
    for i, box in enumerate(boxes):
        pen.rectangle(box, outline=COLORS[i % len(COLORS)], width=2)
    for i, (region, box) in enumerate(zip(row["regions"], boxes, strict=True)):
        label = f"{i} {region['category'] or ''}".rstrip()
        draw_label(image, (box[0], box[1]), label, COLORS[i % len(COLORS)], font)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent + 1
    cell = Image.new("RGB", (CELL_WIDTH, image.height + TEXT_LINES * line_height + 6), "white")
    cell.paste(image, (0, 0))
    pen = ImageDraw.Draw(cell)
    for k, line in enumerate(cell_lines(row, font)):
        xy = (TEXT_MARGIN, image.height + 3 + k * line_height)
        pen.text(xy, line, fill=(20, 20, 20), font=font)
    return cell


def render_preview(
    path: Path, out: Path, n: int = 8, split: str | None = None, columns: int = 4
) -> Path:
    """Draw `n` rows of the dataset at `path` (splits taking turns) into a grid PNG at `out`."""
    rows = read_rows(path, n, split)
    if not rows:
        raise ValueError(f"{path}: no rows to show")
    font = preview_font()
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
