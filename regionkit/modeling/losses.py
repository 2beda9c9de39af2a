"""Losses of the region model's "masks out" half, and their weighted combination.

Mask losses take logits and targets of the same shape ``(N, H, W)`` (N masks, any resolution;
the caller resizes logits to the target's size with ``upsample_masks``), reduce in float32 or wider
(so bfloat16 logits do not lose the small per-pixel terms) and return a float32 (float64 for
float64 inputs) scalar. With no masks
(N = 0) they return ``logits.sum() * 0``: zero, yet still attached to the graph, so the caller can
always add and back-propagate it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "RegionLossWeights",
    "combine_losses",
    "mask_bce_loss",
    "mask_dice_loss",
    "slot_decision_loss",
    "target_refinement_loss",
]


def _check_masks(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() < 2 or logits.shape != targets.shape:
        raise ValueError(
            "logits and targets must both be (N, H, W) (or (N, ...)) of the same shape, got "
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}"
        )


def _upcast(x: Tensor) -> Tensor:
    """``x`` in at least float32 (bf16/fp16/bool/int -> float32; float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _pixel_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-pixel BCE with logits in at least float32, flattened per mask: ``(N, P)``."""
    return F.binary_cross_entropy_with_logits(
        _upcast(logits).flatten(1), _upcast(targets).flatten(1), reduction="none"
    )


def mask_bce_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy averaged over pixels per mask, then over masks.

    ``L = (1/N) sum_n (1/P) sum_i BCE(x_ni, t_ni)`` with
    ``BCE(x, t) = -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))``.

    Args:
        logits: ``(N, H, W)`` mask logits.
        targets: ``(N, H, W)`` in ``[0, 1]`` (bool, integer or float).

    Returns:
        Scalar (float32, or float64 for float64 logits); ``logits.sum() * 0`` when N = 0.
    """
    _check_masks(logits, targets)
    if logits.shape[0] == 0:
        return _upcast(logits).sum() * 0
    return _pixel_bce(logits, targets).mean(dim=1).mean()


def mask_dice_loss(logits: Tensor, targets: Tensor, eps: float = 1e-6) -> Tensor:
    """Soft Dice loss per mask, averaged over masks.

    ``L = (1/N) sum_n [1 - (2 sum_i p_ni t_ni + eps) / (sum_i p_ni + sum_i t_ni + eps)]`` with
    ``p = sigmoid(logits)``. An empty target scores ~0 only if the prediction is empty too.

    Args:
        logits: ``(N, H, W)`` mask logits.
        targets: ``(N, H, W)`` in ``[0, 1]``.
        eps: smoothing added to numerator and denominator; keeps empty-vs-empty finite.

    Returns:
        Scalar (float32, or float64 for float64 logits); ``logits.sum() * 0`` when N = 0.
    """
    _check_masks(logits, targets)
    if logits.shape[0] == 0:
        return _upcast(logits).sum() * 0
    probs = _upcast(logits).flatten(1).sigmoid()
    truth = _upcast(targets).flatten(1)
    numerator = 2 * (probs * truth).sum(dim=1) + eps
    denominator = probs.sum(dim=1) + truth.sum(dim=1) + eps
    return (1 - numerator / denominator).mean()


def target_refinement_loss(
    logits: Tensor, targets: Tensor, groups: Tensor, overlap_weight: float = 2.0
) -> Tensor:
    """PixelLM's target refinement: the extra BCE on pixels that several targets claim.

    Within a group (the masks of one answer turn), a pixel is an *overlap* pixel when at least
    two of the group's predicted masks claim it (logit > 0). With ``o_ni`` = 1 on overlap
    pixels and 0 elsewhere (no gradient through it):

    ``L = (1/N) sum_n (1/P) sum_i (overlap_weight - 1) o_ni BCE(x_ni, t_ni)``

    PixelLM adds this to the plain BCE with the same weight, so that ``mask_bce_loss + L`` is a
    BCE averaged over pixels in which overlap pixels count ``overlap_weight`` times (2) and the
    others once. It is 0 when no pixel is claimed twice, so a single target's BCE is not added a
    second time, and it is normalised by the pixel count, not by the weights' sum, which would
    shrink the overlap pixels' share as they grow in number.

    Args:
        logits: ``(N, H, W)`` mask logits.
        targets: ``(N, H, W)`` in ``[0, 1]``.
        groups: ``(N,)`` integer group id of each mask (any values; equal ids = same group).
        overlap_weight: total weight of an overlap pixel once added to the plain BCE, > 0.

    Returns:
        Scalar (float32, or float64 for float64 logits); ``logits.sum() * 0`` when N = 0.
    """
    _check_masks(logits, targets)
    if groups.shape != logits.shape[:1] or groups.dtype.is_floating_point:
        raise ValueError(
            f"groups must be an integer tensor (N,) = ({logits.shape[0]},), "
            f"got {groups.dtype} {tuple(groups.shape)}"
        )
    if not overlap_weight > 0:
        raise ValueError(f"overlap_weight must be > 0, got {overlap_weight}")
    if logits.shape[0] == 0:
        return _upcast(logits).sum() * 0
    pixel_loss = _pixel_bce(logits, targets)
    claimed = (logits.detach() > 0).flatten(1).to(pixel_loss.dtype)
    groups = groups.to(logits.device)
    same_group = (groups[:, None] == groups[None, :]).to(pixel_loss.dtype)
    # (N, P): how many masks of mask n's group (itself included) claim each pixel.
    overlap = (same_group @ claimed >= 2).to(pixel_loss.dtype)
    return ((overlap_weight - 1) * overlap * pixel_loss).mean(dim=1).mean()


def slot_decision_loss(
    logits: Tensor, labels: Tensor, seg_token_id: int, rej_token_id: int
) -> Tensor:
    """Binary "segment vs reject" cross-entropy at every target slot.

    At positions whose label is ``seg_token_id`` (a target's first codebook token) or
    ``rej_token_id`` (``<rej>``), the two logits of those tokens form a two-way softmax and the
    label picks the class:

    ``L = (1/K) sum_k -log softmax([z_k,seg, z_k,rej])[c_k]``, ``c_k = 1`` if label is ``<rej>``,

    i.e. BCE on ``z_rej - z_seg``. Absent targets are thus learned explicitly and with full
    weight, not only through the text cross-entropy diluted over the whole answer (GSVA trains
    ``[REJ]`` only through that CE; its mask loss at ``[REJ]`` slots carries no gradient).

    Args:
        logits: ``(B, L, V)`` LM logits, already aligned with ``labels`` (position j predicts
            ``labels[:, j]``: the caller shifts).
        labels: ``(B, L)`` token ids, ``-100`` where ignored (never a slot, as ids are >= 0).
        seg_token_id: id of the first codebook token of a target slot.
        rej_token_id: id of the rejection token.

    Returns:
        Scalar (float32, or float64 for float64 logits); 0 attached to ``logits`` when there
        is no slot position.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, L, V) and labels (B, L), got logits {tuple(logits.shape)} "
            f"and labels {tuple(labels.shape)}"
        )
    vocab_size = logits.shape[-1]
    for name, token_id in (("seg_token_id", seg_token_id), ("rej_token_id", rej_token_id)):
        if not 0 <= token_id < vocab_size:
            raise ValueError(f"{name} must be in [0, {vocab_size}), got {token_id}")
    if seg_token_id == rej_token_id:
        raise ValueError(f"seg_token_id and rej_token_id must differ, both are {seg_token_id}")
    pair_ids = torch.tensor([seg_token_id, rej_token_id], device=logits.device)
    pair_logits = logits.index_select(-1, pair_ids)
    is_rej = labels == rej_token_id
    slots = is_rej | (labels == seg_token_id)
    # Every position's 2-way CE, averaged over slot positions only: no host sync, and 0 with a
    # graph when there is no slot.
    per_position = F.cross_entropy(
        _upcast(pair_logits).flatten(0, 1), is_rej.flatten().long(), reduction="none"
    )
    mask = slots.flatten().to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class RegionLossWeights:
    """Weights of the region model's loss terms (``combine_losses``).

    Defaults follow LISA/PixelLM's released recipe (CE 1.0, BCE 2.0, Dice 0.5) plus the two terms
    their releases lacked in practice.
    """

    text: float = 1.0
    """Next-token cross-entropy on the answer text (key ``"text"``)."""
    bce: float = 2.0
    """``mask_bce_loss`` (key ``"bce"``)."""
    dice: float = 0.5
    """``mask_dice_loss`` (key ``"dice"``)."""
    refinement: float = 2.0
    """``target_refinement_loss`` (key ``"refinement"``); equal to ``bce``, as PixelLM adds it,
    so overlap pixels count ``refinement_overlap_weight`` times in the BCE."""
    slot: float = 0.5
    """``slot_decision_loss`` (key ``"slot"``)."""

    def __post_init__(self) -> None:
        bad = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not (math.isfinite(getattr(self, f.name)) and getattr(self, f.name) >= 0)
        }
        if bad:
            raise ValueError(f"RegionLossWeights must be finite and >= 0, got {bad}")


def combine_losses(parts: dict[str, Tensor], weights: RegionLossWeights) -> Tensor:
    """Weighted sum of the loss parts present: ``sum_k weights.k * parts[k]``.

    Args:
        parts: scalar losses keyed by ``RegionLossWeights`` field name (``text``, ``bce``,
            ``dice``, ``refinement``, ``slot``); absent keys are skipped.
        weights: the weights.

    Returns:
        Scalar total loss.
    """
    known = {f.name for f in fields(weights)}
    unknown = sorted(set(parts) - known)
    if unknown:
        raise ValueError(f"unknown loss parts {unknown}; known parts are {sorted(known)}")
    if not parts:
        raise ValueError(f"no loss parts to combine; known parts are {sorted(known)}")
    not_scalar = {name: tuple(value.shape) for name, value in parts.items() if value.dim() != 0}
    if not_scalar:
        raise ValueError(f"loss parts must be scalars, got shapes {not_scalar}")
    terms = [getattr(weights, name) * value for name, value in parts.items()]
    return sum(terms[1:], start=terms[0])
