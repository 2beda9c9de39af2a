"""`regionkit show`: rows from every split, readable labels and accents, visible cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont

from regionkit.builders.flickr30k import Flickr30kBuilder
from regionkit.builders.samples.flickr30k import write_flickr30k_sample
from regionkit.cli import main
from regionkit.pipelines.build import BuildOptions, run_build
from regionkit.pipelines.preview import (
    CELL_WIDTH,
    COLORS,
    LABEL_PAD,
    TEXT_LINES,
    cell_lines,
    draw_label,
    fit_text,
    preview_font,
    read_rows,
    render_row,
    wrap_text,
)

NOTDEF = "\uffff"  # a noncharacter: every font draws it as its missing-glyph box
FONT = preview_font()


@pytest.fixture(scope="module")
def flickr30k(ray_cluster, tmp_path_factory) -> Path:
    """Flickr30k Entities built into train (6 rows), val (2) and test (2): boxes, no masks."""
    root = tmp_path_factory.mktemp("flickr30k")
    sample = write_flickr30k_sample(root / "src", num_images=10, seed=3)
    run_build(
        Flickr30kBuilder(sample.root, sample.images), BuildOptions(root / "out", progress=False)
    )
    return root / "out"


def _drawn(text: str, font: ImageFont.FreeTypeFont) -> bytes:
    image = Image.new("L", (4 * font.size, 2 * font.size))
    ImageDraw.Draw(image).text((0, 0), text, fill=255, font=font)
    return image.tobytes()


def _luminance(color: tuple[int, ...]) -> float:
    linear = [(v / 255) / 12.92 if v <= 10 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in color]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_rows_come_from_every_split_in_turn(flickr30k):
    rows = read_rows(flickr30k, 8)
    assert [r["split"] for r in rows] == ["test", "train", "val"] * 2 + ["train", "train"]
    assert len({r["id"] for r in rows}) == 8
    assert {r["split"] for r in read_rows(flickr30k, 8, "val")} == {"val"}
    with pytest.raises(ValueError, match="no split 'dev'"):
        read_rows(flickr30k, 8, "dev")


def test_show_draws_all_n_rows_and_box_only_regions(flickr30k, tmp_path):
    out = tmp_path / "preview.png"
    assert main(["show", str(flickr30k), "--n", "8", "--out", str(out)]) == 0
    rows = read_rows(flickr30k, 8)
    assert all(region["mask"] is None for row in rows for region in row["regions"])
    heights = [render_row(row, FONT).height for row in rows]
    with Image.open(out) as sheet:
        assert sheet.size == (4 * CELL_WIDTH, max(heights[:4]) + max(heights[4:]))

    cell = render_row(rows[0], FONT)
    x1, y1, _, y2 = (v * CELL_WIDTH / rows[0]["width"] for v in rows[0]["regions"][-1]["bbox"])
    last = COLORS[(len(rows[0]["regions"]) - 1) % len(COLORS)]
    assert cell.getpixel((round(x1), round((y1 + y2) / 2))) == last


@pytest.mark.parametrize("word", ["café", "Zürich", "naïve", "CAFÉ", "Ωμέγα", "Жёлтый"])
def test_accented_greek_and_cyrillic_words_draw_letters_not_missing_glyph_boxes(flickr30k, word):
    row = {**read_rows(flickr30k, 1)[0], "groundings": [], "captions": [word], "messages": []}
    assert cell_lines(row, FONT)[-1] == f"caption: {word}"
    assert all(_drawn(c, FONT) != _drawn(NOTDEF, FONT) for c in word), word
    # Pillow's own default font has no "é": the check above tells the two apart
    default = ImageFont.load_default(size=FONT.size)
    assert _drawn("é", default) == _drawn(NOTDEF, default)

    boxed = "".join(c if c.isascii() else NOTDEF for c in word)
    labels = [Image.new("RGB", (100, 20)) for _ in range(2)]
    draw_label(labels[0], (0, 0), word, COLORS[0], FONT)
    draw_label(labels[1], (0, 0), boxed, COLORS[0], FONT)
    assert labels[0].tobytes() != labels[1].tobytes()


@pytest.mark.parametrize("plate", COLORS)
def test_a_label_sits_on_its_colour_with_contrasting_text_over_a_same_coloured_mask(plate):
    font = FONT
    background = tuple(round(0.55 * 200 + 0.45 * v) for v in plate)  # the region's tinted mask
    image = Image.new("RGB", (120, 40), background)
    draw_label(image, (110, 30), "0 person", plate, font)  # past the corner: moved inside
    box = ImageChops.difference(image, Image.new("RGB", image.size, background)).getbbox()
    assert box[2:] == image.size and box[2] - box[0] >= font.getlength("0 person")
    under = np.asarray(image.crop(box)).reshape(-1, 3)
    assert (under == plate).all(axis=1).mean() > 0.5
    text = [p for p in under.tolist() if _contrast(p, plate) >= 4.5]  # WCAG AA for text
    assert len(text) > 5


def test_a_label_wider_than_the_image_is_cut_with_an_ellipsis():
    font = FONT
    label = "0 " + "a very long category name " * 10
    cut = fit_text(label, font, CELL_WIDTH - 2 * LABEL_PAD)
    assert cut.endswith("…") and font.getlength(cut) <= CELL_WIDTH
    assert fit_text("0 person", font, CELL_WIDTH) == "0 person"
    drawn = [Image.new("RGB", (CELL_WIDTH, 20)) for _ in range(2)]
    draw_label(drawn[0], (0, 0), label, COLORS[0], font)
    draw_label(drawn[1], (0, 0), cut, COLORS[0], font)
    assert drawn[0].tobytes() == drawn[1].tobytes()


def test_text_cut_at_the_line_limit_ends_with_an_ellipsis():
    font = FONT
    width = 200
    lines = wrap_text(["word " * 200, "next text"], font, width, TEXT_LINES)
    assert len(lines) == TEXT_LINES and lines[-1].endswith("…")
    assert all(font.getlength(line) <= width for line in lines)
    assert wrap_text(["short", "text"], font, width, TEXT_LINES) == ["short", "text"]
    long_word = "x" * 100
    assert "".join(wrap_text([long_word], font, width, TEXT_LINES)) == long_word


def test_a_row_with_more_texts_than_lines_shows_the_cut(flickr30k):
    font = FONT
    row = read_rows(flickr30k, 1)[0]
    lines = cell_lines(row, font)
    assert len(lines) == TEXT_LINES and lines[-1].endswith("…")
    few = cell_lines({**row, "groundings": [], "captions": ["one caption"], "messages": []}, font)
    assert few == [f"{row['id']} [{row['task']}]", "caption: one caption"]
