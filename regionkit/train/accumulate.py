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

from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
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
        rows: samples.
        inputs: tokens of the sequences, padding not counted (what tokens/s reports).

    Under data parallelism each count is the sum over every process's window, so each
    process's losses are its share of the whole batch's.
    """

    tokens: int
    masks: int
    slots: int
    rows: int = 0
    inputs: int = 0


def _counts(batch: dict[str, Any], config: RegionConfig) -> WindowCounts:
    labels = batch["labels"][:, 1:]  # the positions whose next token is predicted
    slots = (labels == config.codebook_token_ids[0]) | (labels == config.reject_token_id)
    return WindowCounts(
        tokens=int((labels != IGNORE_INDEX).sum()),
        masks=sum(int(masks.shape[0]) for masks in batch["target_masks"]),
        slots=int(slots.sum()),
        rows=int(batch["input_ids"].shape[0]),
        inputs=int(batch["attention_mask"].sum()),
    )


def window_counts(batches: Sequence[dict[str, Any]], config: RegionConfig) -> WindowCounts:
    """The counts over every micro-batch of an accumulation window."""
    each = [_counts(batch, config) for batch in batches]
    return WindowCounts(*map(sum, zip(*map(astuple, each), strict=True)))


def micro_batch_loss(
    forward: Callable[..., Any],
    config: RegionConfig,
    batch: dict[str, Any],
    window: WindowCounts,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run `forward` (the model, or an engine's forward) on one micro-batch; its loss as a
    share of the window's, and each unweighted part as its share of the window's part, so
    parts too add up over micro-batches (and processes) to the whole window's."""
    out = forward(batch, num_items_in_batch=torch.tensor(max(window.tokens, 1)))
    weights = config.region_loss_weights()
    own = _counts(batch, config)
    shares = {"text": 1.0}  # the text part is already summed over tokens / the window's tokens
    if window.masks:
        shares |= dict.fromkeys(MASK_PARTS, own.masks / window.masks)
    if window.slots:
        shares["slot"] = own.slots / window.slots
    # the same names on every process, whatever its own micro-batch holds, so they add up
    zero = out.loss_parts["text"] * 0
    parts = {name: share * out.loss_parts.get(name, zero) for name, share in shares.items()}
    loss = sum(getattr(weights, name) * part for name, part in parts.items())
    return loss, parts
