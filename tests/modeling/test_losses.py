"""Mask, refinement and slot losses against hand-computed values; weights and combination."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from regionkit.modeling.losses import (
    RegionLossWeights,
    combine_losses,
    mask_bce_loss,
    mask_dice_loss,
    slot_decision_loss,
    target_refinement_loss,
)
from regionkit.modeling.token_layout import IGNORE_INDEX, CodebookGroups

from .region_batches import tiny_model

LN3 = math.log(3.0)


def scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32)


# --- BCE -----------------------------------------------------------------------------------------


def test_bce_hand_computed() -> None:
    # BCE(x, t) = log(1 + e^x) - t x: BCE(0, .) = log 2, BCE(ln 3, 1) = BCE(-ln 3, 0) = log(4/3).
    logits = torch.tensor([[[0.0, LN3], [-LN3, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    first = (2 * math.log(2) + 2 * math.log(4 / 3)) / 4
    expected = (first + math.log(2)) / 2
    torch.testing.assert_close(mask_bce_loss(logits, targets), scalar(expected))


def test_bce_is_mean_per_mask_then_over_masks() -> None:
    logits, targets = torch.randn(3, 4, 5), (torch.rand(3, 4, 5) > 0.5)
    per_mask = [
        F.binary_cross_entropy_with_logits(x, t.float())
        for x, t in zip(logits, targets, strict=True)
    ]
    torch.testing.assert_close(mask_bce_loss(logits, targets), torch.stack(per_mask).mean())


def test_bce_empty_target() -> None:
    targets = torch.zeros(1, 2, 2)
    assert mask_bce_loss(torch.full((1, 2, 2), -30.0), targets) < 1e-6
    torch.testing.assert_close(mask_bce_loss(torch.zeros(1, 2, 2), targets), scalar(math.log(2)))


# --- Dice ----------------------------------------------------------------------------------------


def test_dice_hand_computed() -> None:
    # p = 0.5 everywhere; target has one pixel: 1 - 2 * 0.5 / (4 * 0.5 + 1) = 2/3.
    logits = torch.zeros(2, 2, 2)
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    # second mask: 1 - 2 * 2 / (2 + 4) = 1/3
    expected = (2 / 3 + 1 / 3) / 2
    torch.testing.assert_close(mask_dice_loss(logits, targets, eps=0.0), scalar(expected))


def test_dice_edge_cases() -> None:
    empty = torch.zeros(1, 2, 2)
    full = torch.ones(1, 2, 2)
    # Empty target, empty prediction: eps / (~0 + eps) -> loss ~0.
    assert mask_dice_loss(torch.full((1, 2, 2), -40.0), empty) < 1e-3
    # Empty target, confident wrong prediction: ~1.
    torch.testing.assert_close(mask_dice_loss(torch.full((1, 2, 2), 40.0), empty), scalar(1.0))
    # Perfect prediction of a full target: ~0.
    assert mask_dice_loss(torch.full((1, 2, 2), 40.0), full) < 1e-6


# --- Shared behaviour of the mask losses -------------------------------------------------------


@pytest.mark.parametrize(
    "loss_fn",
    [
        mask_bce_loss,
        mask_dice_loss,
        lambda x, t: target_refinement_loss(x, t, torch.zeros(x.shape[0], dtype=torch.long)),
    ],
)
def test_mask_losses_no_masks_and_dtypes(loss_fn) -> None:
    logits = torch.zeros(0, 4, 4, requires_grad=True)
    loss = loss_fn(logits, torch.zeros(0, 4, 4))
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()

    logits = torch.randn(3, 4, 4)
    targets = torch.rand(3, 4, 4) > 0.5
    reference = loss_fn(logits, targets)
    low = loss_fn(logits.bfloat16(), targets)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, reference, rtol=0.02, atol=0.02)
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(logits, targets[:, :2])


def test_mask_losses_gradcheck() -> None:
    logits = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(2, 3, 3) > 0.5).double()
    groups = torch.tensor([0, 0])
    assert torch.autograd.gradcheck(lambda x: mask_bce_loss(x, targets), (logits,))
    assert torch.autograd.gradcheck(lambda x: mask_dice_loss(x, targets), (logits,))
    assert torch.autograd.gradcheck(lambda x: target_refinement_loss(x, targets, groups), (logits,))


# --- Target refinement -------------------------------------------------------------------------


def overlapping_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 2x2 predictions that both claim pixel (0, 0); only the first target owns it."""
    logits = torch.tensor([[[2.0, 2.0], [-2.0, -2.0]], [[3.0, -1.0], [1.0, -2.0]]])
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]])
    return logits, targets


def test_refinement_hand_computed() -> None:
    logits, targets = overlapping_pair()
    pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1)
    extra = torch.tensor([1.0, 0.0, 0.0, 0.0])  # pixel (0, 0) is claimed by both masks
    expected = ((pixel * extra).sum(1) / 4).mean()
    loss = target_refinement_loss(logits, targets, torch.tensor([0, 0]))
    torch.testing.assert_close(loss, expected)


def test_refinement_added_to_bce_counts_overlap_pixels_twice_as_pixellm_means() -> None:
    logits, targets = overlapping_pair()
    pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1)
    weights = torch.tensor([2.0, 1.0, 1.0, 1.0])
    pixellm = ((pixel * weights).sum(1) / 4).mean()  # alpha = 2 on overlaps, mean over pixels
    together = mask_bce_loss(logits, targets) + target_refinement_loss(
        logits, targets, torch.tensor([0, 0])
    )
    torch.testing.assert_close(together, pixellm)
    # Not normalised by the weights' sum: that would give the overlap pixel 2/1.25 = 1.6x.
    assert not torch.allclose(together, ((pixel * weights).sum(1) / weights.sum()).mean())


def test_refinement_weights_exactly_the_overlap_pixels() -> None:
    logits, targets = overlapping_pair()
    grads = []
    losses = (
        mask_bce_loss,
        lambda x, t: mask_bce_loss(x, t) + target_refinement_loss(x, t, torch.tensor([0, 0])),
    )
    for loss_fn in losses:
        x = logits.clone().requires_grad_()
        loss_fn(x, targets).backward()
        grads.append(x.grad)
    expected = torch.tensor([[2.0, 1.0], [1.0, 1.0]]).expand(2, 2, 2)
    torch.testing.assert_close(grads[1] / grads[0], expected)


def test_refinement_adds_nothing_without_double_claims() -> None:
    logits, targets = overlapping_pair()
    zero = torch.tensor(0.0)
    # Different groups: a pixel claimed by two turns' masks is not an overlap.
    torch.testing.assert_close(target_refinement_loss(logits, targets, torch.tensor([4, 9])), zero)
    # A single target: its BCE is not added a second time.
    torch.testing.assert_close(
        target_refinement_loss(logits[:1], targets[:1], torch.tensor([0])), zero
    )
    # Same group, disjoint claims.
    disjoint = logits.clone()
    disjoint[1, 0, 0] = -3.0
    torch.testing.assert_close(
        target_refinement_loss(disjoint, targets, torch.tensor([0, 0])), zero
    )
    # overlap_weight = 1 adds nothing either.
    torch.testing.assert_close(
        target_refinement_loss(logits, targets, torch.tensor([0, 0]), overlap_weight=1.0), zero
    )


def test_refinement_groups_with_arbitrary_ids() -> None:
    logits, targets = overlapping_pair()
    three_logits = torch.cat([logits, logits[:1]])
    three_targets = torch.cat([targets, targets[:1]])
    # Masks 0 and 2 share group 7 and claim the same pixels: all their claimed pixels overlap.
    loss = target_refinement_loss(three_logits, three_targets, torch.tensor([7, 3, 7]))
    pixel = F.binary_cross_entropy_with_logits(three_logits, three_targets, reduction="none")
    extra = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0] * 4, [1.0, 1.0, 0.0, 0.0]])
    expected = ((pixel.flatten(1) * extra).sum(1) / 4).mean()
    torch.testing.assert_close(loss, expected)


def test_refinement_bad_arguments() -> None:
    logits, targets = overlapping_pair()
    with pytest.raises(ValueError, match="groups"):
        target_refinement_loss(logits, targets, torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match="groups"):
        target_refinement_loss(logits, targets, torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="overlap_weight"):
        target_refinement_loss(logits, targets, torch.tensor([0, 0]), overlap_weight=0.0)


# --- Slot decision -----------------------------------------------------------------------------

SEG, REJ, VOCAB = 3, 4, 5


def test_slot_decision_hand_computed() -> None:
    logits = torch.zeros(2, 3, VOCAB)
    logits[0, 1, [SEG, REJ]] = torch.tensor([2.0, 0.0])  # a target slot: -log sigmoid(2)
    logits[1, 0, [SEG, REJ]] = torch.tensor([0.0, 1.0])  # a rejection: -log sigmoid(1)
    labels = torch.tensor([[1, SEG, -100], [REJ, -100, 2]])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    torch.testing.assert_close(slot_decision_loss(logits, labels, SEG, REJ), scalar(expected))


def test_slot_decision_only_reads_slot_positions_and_pair_logits() -> None:
    logits = torch.randn(2, 4, VOCAB, requires_grad=True)
    labels = torch.tensor([[0, SEG, -100, REJ], [REJ, 2, SEG, -100]])
    slot_decision_loss(logits, labels, SEG, REJ).backward()
    grad = logits.grad
    slots = (labels == SEG) | (labels == REJ)
    assert grad[~slots].abs().sum() == 0
    assert grad[..., [0, 1, 2]].abs().sum() == 0
    assert (grad[slots][:, [SEG, REJ]] != 0).all()


def test_slot_decision_no_slots() -> None:
    logits = torch.randn(2, 3, VOCAB, requires_grad=True)
    labels = torch.tensor([[1, 2, -100], [-100, -100, 0]])
    loss = slot_decision_loss(logits, labels, SEG, REJ)
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and not logits.grad.any()


def test_slot_decision_bfloat16_and_bad_arguments() -> None:
    logits = torch.randn(2, 3, VOCAB)
    labels = torch.tensor([[SEG, REJ, -100], [REJ, 1, SEG]])
    torch.testing.assert_close(
        slot_decision_loss(logits.bfloat16(), labels, SEG, REJ),
        slot_decision_loss(logits, labels, SEG, REJ),
        rtol=0.02,
        atol=0.02,
    )
    with pytest.raises(ValueError, match="rej_token_id must be in"):
        slot_decision_loss(logits, labels, SEG, VOCAB)
    with pytest.raises(ValueError, match="must differ"):
        slot_decision_loss(logits, labels, SEG, SEG)
    with pytest.raises(ValueError, match="labels"):
        slot_decision_loss(logits, labels[:, :2], SEG, REJ)


# --- Weights and combination -------------------------------------------------------------------


def test_loss_weights_defaults_and_validation() -> None:
    weights = RegionLossWeights()
    assert (weights.text, weights.bce, weights.dice, weights.refinement, weights.slot) == (
        1.0,
        2.0,
        0.5,
        2.0,
        0.5,
    )
    with pytest.raises(ValueError, match=r"'bce': -1\.0.*'slot': nan"):
        RegionLossWeights(bce=-1.0, slot=float("nan"))


def test_combine_losses() -> None:
    text = torch.tensor(1.5, requires_grad=True)
    parts = {"text": text, "dice": torch.tensor(0.4), "slot": torch.tensor(2.0)}
    total = combine_losses(parts, RegionLossWeights(text=2.0, dice=0.5, slot=0.25))
    torch.testing.assert_close(total, scalar(2.0 * 1.5 + 0.5 * 0.4 + 0.25 * 2.0))
    total.backward()
    assert text.grad == 2.0
    with pytest.raises(ValueError, match=r"unknown loss parts.*'mask'"):
        combine_losses({"mask": torch.tensor(1.0)}, RegionLossWeights())
    with pytest.raises(ValueError, match="no loss parts"):
        combine_losses({}, RegionLossWeights())
    with pytest.raises(ValueError, match="scalars"):
        combine_losses({"bce": torch.ones(2)}, RegionLossWeights())


def test_the_model_refines_the_masks_of_each_answer_turn_apart() -> None:
    """Two masks claiming the same pixel are contested only when one turn asks for both."""
    model = tiny_model()
    pred = [torch.full((2, 4, 4), 3.0)]  # both masks claim every pixel
    target = [torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])]
    groups = CodebookGroups(sample=torch.tensor([0, 0]), start=torch.tensor([2, 7]), counts=[2])
    two_turns = torch.full((1, 10), IGNORE_INDEX)
    two_turns[0, 1:4] = 5  # turn 1 holds the group at 2
    two_turns[0, 6:9] = 5  # turn 2 holds the group at 7
    one_turn = torch.full((1, 10), IGNORE_INDEX)
    one_turn[0, 1:9] = 5
    apart = model._mask_loss_parts(pred, target, groups, two_turns)["refinement"]
    together = model._mask_loss_parts(pred, target, groups, one_turn)["refinement"]
    assert apart.item() == 0
    assert together.item() > 0


def test_the_models_slot_decision_reads_the_logits_that_predict_the_slot() -> None:
    """Position j's logits predict token j + 1: a model sure of the right class one position
    before each slot, and of the wrong one at the slot itself, has a slot loss near zero."""
    model = tiny_model()
    config = model.config
    seg, rej = config.codebook_token_ids[0], config.reject_token_id
    vocab = config.text_config.vocab_size
    labels = torch.full((1, 6), IGNORE_INDEX)
    labels[0, 2], labels[0, 4] = seg, rej
    logits = torch.zeros(1, 6, vocab)
    logits[0, 1, seg], logits[0, 3, rej] = 20.0, 20.0  # before each slot: right
    logits[0, 2, rej], logits[0, 4, seg] = 20.0, 20.0  # at each slot: wrong
    slot = model._text_loss_parts(logits, labels)["slot"]
    assert slot.item() < 1e-6
