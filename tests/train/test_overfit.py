"""The whole input path trains: rows in storage form, through the processor and collate, into
the tiny region model, which learns their masks (a square of a colour on a plain background,
found from "segment the dog .") until every predicted mask overlaps its target by IoU > 0.9."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from regionkit.catalog.masks import encode_mask
from regionkit.catalog.records import make_region, make_row
from regionkit.modeling import RegionForConditionalGeneration, tiny_region_config
from regionkit.train.collate import collate
from regionkit.train.processor import ProcessorSettings, RegionProcessor
from regionkit.train.tiny_tokenizer import tiny_tokenizer

SIDE, SQUARE, STEPS = 112, 40, 150


def _rows(folder: Path, count: int = 4) -> list[dict]:
    """`count` rows, each its own image with the square somewhere else."""
    rng = np.random.default_rng(0)
    rows = []
    for n in range(count):
        x1, y1 = (int(v) for v in rng.integers(0, SIDE - SQUARE, 2))
        x2, y2 = x1 + SQUARE, y1 + SQUARE
        pixels = np.full((SIDE, SIDE, 3), 40, np.uint8)
        pixels[y1:y2, x1:x2] = (220, 60, 60)
        Image.fromarray(pixels).save(folder / f"{n}.png")
        mask = np.zeros((SIDE, SIDE), np.uint8)
        mask[y1:y2, x1:x2] = 1
        region = make_region("0", [x1, y1, x2, y2], encode_mask(mask))
        messages = [
            {"role": "user", "content": "segment the dog ."},
            {"role": "assistant", "content": "<seg0>"},
        ]
        rows.append(
            make_row(
                source="coco",
                split="train",
                native_key=str(n),
                image_path=str(folder / f"{n}.png"),
                width=SIDE,
                height=SIDE,
                builder="coco",
                builder_version="1",
                source_files=[],
                regions=[region],
                messages=messages,
            )
        )
    return rows


def test_the_tiny_model_learns_the_masks_of_a_few_rows(tmp_path):
    settings = ProcessorSettings(tile_size=56, max_tiles=4, patch_size=14)
    processor = RegionProcessor(tiny_tokenizer(), tiny_region_config(), settings)
    batch = collate([processor(row) for row in _rows(tmp_path)], pad_token_id=0)
    torch.manual_seed(0)
    model = RegionForConditionalGeneration(tiny_region_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(STEPS):
        out = model(**batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model(**batch)
    for predicted, target in zip(out.pred_masks, batch["target_masks"], strict=True):
        hit, truth = predicted[0] > 0, target[0] > 0.5
        assert (hit & truth).sum() / (hit | truth).sum() > 0.9
