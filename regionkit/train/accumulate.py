"""The loss of one micro-batch as its share of the whole accumulated batch.

With gradient accumulation, averaging each micro-batch's own mean loss weighs a token of a
short micro-batch more than one of a long one, and a mask of a micro-batch with one target
more than one with ten. Here the text loss is summed over a micro-batch's tokens and divided by
the tokens of the whole window (transformers' `num_items_in_batch`), and the mask and slot
losses, means over a micro-batch's masks and slots, are weighted by that micro-batch's share of
the window's masks and slots; so the window's summed loss is exactly the loss of all its
micro-batches taken as one batch, whatever their sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from regionkit.modeling import RegionConfig
from regionkit.modeling.token_layout import IGNORE_INDEX

MASK_PARTS = ("bce", "dice", "refinement")


@dataclass(frozen=True)
class WindowCounts:
    """What the loss of a window of micro-batches averages over.

    Attributes:
        tokens: labelled tokens (the text loss's items).
        masks: target masks.
        slots: segment-or-reject decisions (labels that are a first codebook token or reject).
    """

    tokens: int
    masks: int
    slots: int


def _counts(batch: dict[str, Any], config: RegionConfig) -> WindowCounts:
    labels = batch["labels"][:, 1:]  # the positions whose next token is predicted
    slots = (labels == config.codebook_token_ids[0]) | (labels == config.reject_token_id)
    return WindowCounts(
        tokens=int((labels != IGNORE_INDEX).sum()),
        masks=sum(int(masks.shape[0]) for masks in batch["target_masks"]),
        slots=int(slots.sum()),
    )


def window_counts(batches: Sequence[dict[str, Any]], config: RegionConfig) -> WindowCounts:
    """The counts over every micro-batch of an accumulation window."""
    each = [_counts(batch, config) for batch in batches]
    return WindowCounts(*(sum(getattr(c, f) for c in each) for f in ("tokens", "masks", "slots")))


def micro_batch_loss(
    model: Any, batch: dict[str, Any], window: WindowCounts
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run `model` on one micro-batch; its loss as a share of the window's, and the parts."""
    config: RegionConfig = model.config
    out = model(**batch, num_items_in_batch=torch.tensor(max(window.tokens, 1)))
    parts = out.loss_parts
    weights = config.region_loss_weights()
    own = _counts(batch, config)
    loss = weights.text * parts["text"]  # summed over tokens, divided by the window's
    if "bce" in parts and window.masks:
        share = own.masks / window.masks
        loss = loss + share * sum(getattr(weights, name) * parts[name] for name in MASK_PARTS)
    if window.slots:
        loss = loss + (own.slots / window.slots) * weights.slot * parts["slot"]
    return loss, parts
