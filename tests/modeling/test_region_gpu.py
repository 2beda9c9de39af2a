"""The region model on CUDA in bfloat16 (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from regionkit.modeling import RegionForConditionalGeneration
from regionkit.modeling.attention import flash_attn_importable

from .region_batches import SampleSpec, build_sample, collate, tiny_model, to_device

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
SPECS = [
    SampleSpec((1, 1), [(0.1, 0.2, 0.6, 0.9)], ["seg", "rej"]),
    SampleSpec((2, 2), [(0.0, 0.0, 1.0, 1.0), (0.5, 0.4, 1.0, 1.0)], ["seg", "seg"]),
]
DEVICE = torch.device("cuda")


def _batch(model) -> dict:
    samples = [build_sample(model.config, spec, seed) for seed, spec in enumerate(SPECS)]
    return to_device(collate(samples), DEVICE, torch.bfloat16)


def test_bf16_training_step_reaches_every_head():
    model = tiny_model().to(DEVICE, torch.bfloat16).train()
    out = model(**_batch(model))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for module in (model.model.mask_prompt_encoder, model.codebook_fusion, model.pixel_decoder):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_bf16_matches_float32_within_half_precision():
    model = tiny_model().to(DEVICE)
    batch = _batch(model)
    with torch.no_grad():
        reference = model(**to_device(batch, DEVICE, torch.float32))
        half = model.to(torch.bfloat16)(**batch)
    torch.testing.assert_close(half.logits.float(), reference.logits, rtol=5e-2, atol=5e-2)


def test_auto_attention_runs_flash_when_it_imports(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    model = RegionForConditionalGeneration.from_pretrained(
        tmp_path, attn_implementation="auto", dtype=torch.bfloat16
    ).to(DEVICE)
    expected = "flash_attention_2" if flash_attn_importable() else "sdpa"
    assert model.config.text_config._attn_implementation == expected
    with torch.no_grad():
        out = model(**_batch(model))
    assert all(torch.isfinite(masks).all() for masks in out.pred_masks)


def test_generate_with_regions_on_cuda():
    model = tiny_model().to(DEVICE, torch.bfloat16)
    batch = _batch(model)
    for key in ("labels", "target_masks"):
        del batch[key]
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.sequences.shape[0] == 2 and len(out.pred_masks) == 2
