"""Samples of any sizes into one batch: ids padded, tiles packed, per-sample lists kept.

The region model takes every sample's tiles packed along one axis with each sample's grid in
`image_grids`, prompt masks for as many slots as the batch's busiest sample uses, scaled to
[0, 1], boxes and target masks as one tensor per sample, and ids padded to one length with
the attention mask marking the real tokens (left padding by default, as generation needs).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from regionkit.modeling.token_layout import IGNORE_INDEX
from regionkit.train.processor import Sample


def collate(samples: list[Sample], pad_token_id: int, padding_side: str = "left") -> dict[str, Any]:
    """One batch for `RegionForConditionalGeneration.forward`."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    length = max(len(s.input_ids) for s in samples)

    def padded(values: Tensor, fill: int) -> Tensor:
        padding = values.new_full((length - len(values),), fill)
        return torch.cat([padding, values] if padding_side == "left" else [values, padding])

    slots = max(s.prompt_masks.shape[1] for s in samples)
    prompts = [
        F.pad(s.prompt_masks, (0, 0, 0, 0, 0, slots - s.prompt_masks.shape[1])) for s in samples
    ]
    return {
        "input_ids": torch.stack([padded(s.input_ids, pad_token_id) for s in samples]),
        "labels": torch.stack([padded(s.labels, IGNORE_INDEX) for s in samples]),
        "attention_mask": torch.stack([padded(torch.ones_like(s.input_ids), 0) for s in samples]),
        "pixel_values": torch.cat([s.pixel_values for s in samples]),
        "prompt_masks": torch.cat(prompts).to(torch.float32).div_(255),
        "image_grids": torch.stack([s.image_grid for s in samples]),
        "region_boxes": [s.region_boxes for s in samples],
        "target_masks": [s.target_masks for s in samples],
    }
