"""Scoring a region model on a dataset's rows by letting it answer, as a user would ask.

Each question is put to the model as a generation prompt (the processor's `prompt`), its
answer generated with masks decoded at the image's size, and the masks and rejection read
off the answer: a codebook group is a predicted mask, `<|reject|>` says the thing is absent.
`evaluate_referring` asks "Segment <text>." for every referring text of every row (gRefCOCO's
no-target texts included) and scores with the gRefCOCO metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from regionkit.catalog.masks import decode_rle
from regionkit.modeling import RegionForConditionalGeneration
from regionkit.train.collate import collate
from regionkit.train.metrics import GresScores
from regionkit.train.processor import ProcessorSettings, RegionProcessor

REFER_QUESTION = "Segment {text}."


@dataclass
class ModelAnswer:
    """What the model generated for one question.

    Attributes:
        tokens: the generated ids.
        masks: one boolean `(height, width)` mask per complete codebook group, in order.
        rejected: whether the answer holds the reject token.
    """

    tokens: list[int]
    masks: list[np.ndarray]
    rejected: bool


@torch.no_grad()
def answer(
    model: RegionForConditionalGeneration,
    processor: RegionProcessor,
    row: dict[str, Any],
    question: str,
    **generate: Any,
) -> ModelAnswer:
    """The model's answer to `question` about `row`'s image (`generate` is passed on)."""
    sample = processor.prompt(row, [{"role": "user", "content": question}])
    pad = processor.tokenizer.pad_token_id or 0
    batch = collate([sample], pad_token_id=pad)
    del batch["labels"], batch["target_masks"]
    out = model.generate(**batch, mask_sizes=[(row["height"], row["width"])], **generate)
    tokens = out.sequences[0, batch["input_ids"].shape[1] :].tolist()
    masks = [(logits > 0).cpu().numpy() for logits in out.pred_masks[0]]
    return ModelAnswer(tokens, masks, model.config.reject_token_id in tokens)


def evaluate_referring(
    model: RegionForConditionalGeneration,
    processor: RegionProcessor,
    rows: Iterable[dict[str, Any]],
    **generate: Any,
) -> GresScores:
    """gIoU, cIoU, N-acc and T-acc over every referring text whose targets all have masks."""
    scores = GresScores()
    for row in rows:
        shape = (row["height"], row["width"])
        for grounding in row["groundings"]:
            regions = [row["regions"][k] for k in grounding["regions"]]
            if any(region["mask"] is None for region in regions):
                continue  # a box-only target cannot be scored as a mask
            truth = [decode_rle(region["mask"]).astype(bool) for region in regions]
            question = REFER_QUESTION.format(text=grounding["text"].strip())
            scores.add(answer(model, processor, row, question, **generate).masks, truth, shape)
    return scores


def dataset_rows(folder: Path, split: str) -> Iterator[dict[str, Any]]:
    """A built dataset's rows of `split`, shard by shard."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    if split not in manifest["splits"]:
        raise ValueError(f"{folder}: no split {split!r}; it has {sorted(manifest['splits'])}")
    for shard in manifest["splits"][split]["shards"]:
        yield from pq.read_table(Path(folder) / shard["file"]).to_pylist()


def processor_for(
    model: RegionForConditionalGeneration, tokenizer: Any, max_tiles: int
) -> RegionProcessor:
    """A processor with the model's own tile size and patch size."""
    patch_embed = model.model.vision_tower.timm_model.patch_embed
    settings = ProcessorSettings(
        tile_size=int(patch_embed.img_size[0]),
        max_tiles=max_tiles,
        patch_size=int(patch_embed.patch_size[0]),
        max_length=model.config.text_config.max_position_embeddings,
    )
    return RegionProcessor(tokenizer, model.config, settings)


def format_results(results: dict[str, dict[str, float | int]]) -> str:
    """Results as a table: one line per dataset and split."""
    names = sorted({name for metrics in results.values() for name in metrics})
    lines = [f"{'dataset':40} " + " ".join(f"{name:>8}" for name in names)]
    for where, metrics in results.items():
        cells = [
            f"{metrics[name]:>8.4f}"
            if isinstance(metrics.get(name), float)
            else f"{metrics.get(name, ''):>8}"
            for name in names
        ]
        lines.append(f"{where:40} " + " ".join(cells))
    return "\n".join(lines)
