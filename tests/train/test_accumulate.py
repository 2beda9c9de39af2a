"""Accumulated micro-batches of different sizes give the loss and gradients of one batch."""

from __future__ import annotations

import torch

from regionkit.modeling.token_layout import IGNORE_INDEX
from regionkit.train.accumulate import WindowCounts, micro_batch_loss, window_counts
from tests.modeling.region_batches import SampleSpec, build_sample, collate, tiny_model

SPECS = [
    SampleSpec((1, 1), [(0.1, 0.1, 0.5, 0.5)], ["seg"]),
    SampleSpec((2, 1), [(0.0, 0.2, 0.7, 0.9), (0.5, 0.5, 1.0, 1.0)], ["seg", "rej", "seg"], [1, 2]),
    SampleSpec((1, 2), [], ["rej"]),
]


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_two_uneven_micro_batches_add_up_to_the_whole_batch():
    model = tiny_model(seed=1)
    with torch.no_grad():
        model.model.mask_prompt_encoder.weight.normal_()
    samples = [build_sample(model.config, spec, seed=i) for i, spec in enumerate(SPECS)]
    whole = collate(samples)
    model.zero_grad()
    whole_out = model(**whole)
    expected = whole_out.loss
    expected.backward()
    expected_grads = _grads(model)

    micro = [collate(samples[:1]), collate(samples[1:])]  # 1 target vs 3, few tokens vs many
    window = window_counts(micro, model.config)
    model.zero_grad()
    total, parts = 0.0, {}
    for batch in micro:
        loss, own = micro_batch_loss(lambda b, **k: model(**b, **k), model.config, batch, window)
        loss.backward()
        total = total + loss.detach()
        for name, value in own.items():
            parts[name] = parts.get(name, 0.0) + value.detach()
    torch.testing.assert_close(total, expected.detach(), rtol=1e-4, atol=1e-5)
    assert sorted(parts) == sorted(whole_out.loss_parts)  # each part adds up to the whole's
    for name, value in whole_out.loss_parts.items():
        torch.testing.assert_close(parts[name], value.detach(), rtol=1e-4, atol=1e-5)
    for got, want in zip(_grads(model), expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)

    model.zero_grad()  # averaging each micro-batch's own mean loss is not the same
    for batch in micro:
        (model(**batch).loss / len(micro)).backward()
    naive = _grads(model)
    pairs = zip(naive, expected_grads, strict=True)
    assert any(not torch.allclose(a, b, rtol=1e-2, atol=1e-4) for a, b in pairs)


def test_a_windows_counts_are_its_samples_padding_left_out():
    config = tiny_model().config
    samples = [build_sample(config, spec, seed=i) for i, spec in enumerate(SPECS)]
    micro = [collate(samples[:1]), collate(samples[1:])]  # the second pads its shorter sample
    assert micro[1]["attention_mask"].sum() < micro[1]["input_ids"].numel()
    assert window_counts(micro, config) == WindowCounts(
        tokens=sum(int((s["labels"] != IGNORE_INDEX).sum()) for s in samples),
        masks=3,  # one seg, then two
        slots=5,  # seg; seg, rej, seg; rej
        rows=3,
        inputs=sum(len(s["input_ids"]) for s in samples),
    )
