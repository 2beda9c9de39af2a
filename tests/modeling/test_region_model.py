"""The tiny region model end to end: gradients, replay placement, batching, masks, loading."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align
from transformers import PerceptionLMConfig, PerceptionLMForConditionalGeneration

from regionkit.modeling import RegionForConditionalGeneration, tiny_region_config
from regionkit.modeling.pixel_decoder import FourierPositionEncoding

from .region_batches import SampleSpec, build_sample, collate, tiny_model

SPECS = [
    SampleSpec((1, 1), [(0.1, 0.2, 0.6, 0.9)], ["seg", "rej"]),
    SampleSpec((1, 2), [], ["seg"]),
    SampleSpec((2, 1), [(0.0, 0.0, 1.0, 1.0), (0.5, 0.4, 1.0, 1.0)], ["seg", "seg", "rej"], [2, 1]),
]
CLOSE = {"rtol": 1e-4, "atol": 1e-5}


def _batch(specs=SPECS, padding_side="left", seed=0):
    config = tiny_region_config()
    return collate([build_sample(config, s, seed + i) for i, s in enumerate(specs)], padding_side)


def _capture_llm_inputs(model):
    """Record ``inputs_embeds`` handed to the LLM; returns the list it fills."""
    seen = []

    def hook(module, args, kwargs):
        seen.append(kwargs["inputs_embeds"].detach())

    model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_forward_backward_reaches_every_head():
    model = tiny_model().train()
    out = model(**_batch())
    assert set(out.loss_parts) == {"text", "slot", "bce", "dice", "refinement"}
    assert torch.isfinite(out.loss)
    out.loss.backward()
    heads = {
        "mask prompt encoder": model.model.mask_prompt_encoder,
        "codebook fusion": model.codebook_fusion,
        "pixel decoder": model.pixel_decoder,
    }
    for name, module in heads.items():
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert model.codebook_fusion.token_logits.grad.abs().sum() > 0
    assert model.pixel_decoder.scale_logits.grad.abs().sum() > 0
    assert model.model.vision_tower.timm_model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def _token_map(model, pixel_values, prompt_masks, tile_slice, tiles_h, tiles_w):
    """The merged projected map of one sample, assembled tile by tile (independent of merge)."""
    features = model.model.get_image_features(pixel_values, prompt_masks=prompt_masks).pooler_output
    side = int(features.shape[1] ** 0.5)
    tiles = features[tile_slice].transpose(1, 2).reshape(-1, features.shape[-1], side, side)
    rows = [torch.cat(list(tiles[r * tiles_w : (r + 1) * tiles_w]), dim=-1) for r in range(tiles_h)]
    return torch.cat(rows, dim=-2)


@pytest.mark.parametrize("thumbnail", [True, False])
@pytest.mark.parametrize("box", [(0.5, 0.4, 1.0, 1.0), (0.05, 0.1, 0.35, 0.45)])
def test_replayed_tokens_equal_roi_align_of_the_box_on_the_merged_map(box, thumbnail):
    model = tiny_model(vision_thumbnail=thumbnail)
    config = model.config
    specs = [SampleSpec((1, 1), [], ["seg"]), SampleSpec((2, 3), [(0, 0, 1, 1), box], ["seg"])]
    batch = collate([build_sample(config, spec, seed) for seed, spec in enumerate(specs)])
    seen = _capture_llm_inputs(model)
    # Sample 1's six grid tiles follow sample 0's tiles and its own thumbnail, if any.
    first = 3 if thumbnail else 1
    with torch.no_grad():
        model(**batch)
        token_map = _token_map(
            model, batch["pixel_values"], batch["prompt_masks"], slice(first, first + 6), 2, 3
        )
    height, width = token_map.shape[-2:]
    cells = torch.tensor([box]) * torch.tensor([width, height, width, height])
    want = roi_align(token_map[None], [cells], config.replay_grid, 1.0, 2, aligned=True)
    want = want.flatten(2).transpose(1, 2)[0]  # (k * k, D)
    placeholders = batch["input_ids"][1] == config.region_feature_token_id
    got = seen[0][1][placeholders].reshape(2, config.replay_tokens, -1)[1]
    torch.testing.assert_close(got, want, **CLOSE)


def test_replayed_tokens_change_when_the_box_moves():
    model = tiny_model()
    placements = []
    for box in [(0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)]:
        batch = _batch([SampleSpec((2, 2), [box], ["seg"])])
        seen = _capture_llm_inputs(model)
        with torch.no_grad():
            model(**batch)
        placements.append(seen[0][0][batch["input_ids"][0] == model.config.region_feature_token_id])
    assert not torch.allclose(placements[0], placements[1])


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batch_of_three_equals_three_single_runs(padding_side):
    model = tiny_model()
    batch = _batch(padding_side=padding_side)
    with torch.no_grad():
        together = model(**batch)
        for index, spec in enumerate(SPECS):
            alone = model(**_batch([spec], seed=index))
            valid = batch["attention_mask"][index].bool()
            torch.testing.assert_close(together.logits[index][valid], alone.logits[0], **CLOSE)
            torch.testing.assert_close(together.pred_masks[index], alone.pred_masks[0], **CLOSE)


def test_reject_and_multi_target_answers_give_one_mask_per_codebook_group():
    model = tiny_model()
    batch = _batch()
    del batch["target_masks"]
    with torch.no_grad():
        out = model(**batch, mask_sizes=[(8, 8), (9, 7), (5, 6)])
    assert [m.shape for m in out.pred_masks] == [(1, 8, 8), (1, 9, 7), (2, 5, 6)]
    first_codebook = model.config.codebook_token_ids[0]
    for ids, starts in zip(batch["input_ids"], out.target_positions, strict=True):
        assert (ids[starts] == first_codebook).all()
    only_reject = _batch([SampleSpec((1, 1), [], ["rej", "rej"])])
    with torch.no_grad():
        out = model(**only_reject)
    assert out.pred_masks[0].shape[0] == 0 and torch.isfinite(out.loss)


def test_masks_default_to_the_decoder_resolution():
    model = tiny_model()
    batch = _batch()
    del batch["target_masks"], batch["labels"]
    with torch.no_grad():
        out = model(**batch)
    side = model.config.decoder_grid * 2**model.config.num_scales
    assert [m.shape for m in out.pred_masks] == [(1, side, side), (1, side, side), (2, side, side)]
    assert out.loss is None


def test_placeholder_and_box_count_mismatch_names_both_counts():
    model = tiny_model()
    batch = _batch()
    batch["region_boxes"][2] = batch["region_boxes"][2][:1]
    with pytest.raises(ValueError, match="2 region placeholder runs \\(8 tokens\\) but 1 region"):
        model(**batch)
    batch = _batch()
    batch["region_boxes"][1] = torch.tensor([[0.1, 0.1, 0.2, 0.2]])
    with pytest.raises(ValueError, match="sample 1 has 0 region placeholder runs"):
        model(**batch)


def test_image_token_and_target_count_mismatches_raise():
    model = tiny_model()
    batch = _batch()
    batch["image_grids"][1] = torch.tensor([2, 2])
    with pytest.raises(ValueError, match="image tokens per sample \\[8, 12, 12\\] do not match"):
        model(**batch)
    batch = _batch()
    batch["target_masks"][2] = batch["target_masks"][2][:1]
    with pytest.raises(ValueError, match="target masks per sample \\[1, 1, 1\\] do not match"):
        model(**batch)


@pytest.mark.parametrize(
    "box,message",
    [
        ((0.6, 0.1, 0.5, 0.5), "x1 <= x2"),
        ((0.1, 0.1, 1.5, 0.5), "must lie in \\[0, 1\\]"),
    ],
)
def test_malformed_boxes_raise_in_the_model(box, message):
    model = tiny_model()
    batch = _batch()
    batch["region_boxes"][0] = torch.tensor([box])
    with pytest.raises(ValueError, match=message):
        model(**batch)
    batch["region_boxes"][0] = torch.tensor([0.1, 0.1, 0.5, 0.5])
    with pytest.raises(ValueError, match="must be \\(num_regions, 4\\)"):
        model(**batch)


def test_broken_codebook_group_raises_in_training():
    model = tiny_model()
    batch = _batch()
    codebook = model.config.codebook_token_ids
    row = batch["input_ids"][1]
    row[(row == codebook[1]).nonzero()[0]] = 5  # break sample 1's only group
    with pytest.raises(ValueError, match=r"complete groups.*1: \(3, 0\)"):
        model(**batch)


def test_text_only_batch_runs_without_images():
    model = tiny_model()
    batch = _batch()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.pred_masks is None and out.logits.shape[:2] == batch["input_ids"].shape
    with pytest.raises(ValueError, match="need pixel_values"):
        model(input_ids=batch["input_ids"], region_boxes=batch["region_boxes"])


def test_activation_checkpointing_gives_the_same_gradients():
    batch = _batch()
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(**batch).loss.backward()
        grads.append([p.grad for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1])
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(checkpointed, plain, **CLOSE)


def test_save_and_reload_reproduce_outputs_exactly(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.model.mask_prompt_encoder.weight.normal_()
        model.codebook_fusion.token_logits.normal_()
    model.save_pretrained(tmp_path)
    loaded = RegionForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = _batch()
    with torch.no_grad():
        before, after = model(**batch), loaded(**batch)
    assert torch.equal(before.logits, after.logits)
    assert torch.equal(before.loss, after.loss)
    for first, second in zip(before.pred_masks, after.pred_masks, strict=True):
        assert torch.equal(first, second)


def test_auto_attention_loads_with_sdpa_on_cpu(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    loaded = RegionForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="auto")
    assert loaded.config.text_config._attn_implementation == "sdpa"


def test_plain_perception_lm_checkpoint_loads_with_fresh_region_heads(tmp_path):
    config = tiny_region_config()
    plain_config = PerceptionLMConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=config.text_config.to_dict(),
        projector_pooling_ratio=config.projector_pooling_ratio,
        image_token_id=config.image_token_id,
        video_token_id=config.video_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    plain = PerceptionLMForConditionalGeneration(plain_config)
    plain.save_pretrained(tmp_path)
    model = RegionForConditionalGeneration.from_pretrained(tmp_path, config=config)
    assert model.model.mask_prompt_encoder.weight.abs().sum() == 0
    assert model.codebook_fusion.token_logits.abs().sum() == 0
    assert model.pixel_decoder.scale_logits.abs().sum() == 0
    fresh = FourierPositionEncoding(config.decoder_dim).frequencies
    for scale_pe in [model.pixel_decoder.pos_enc]:
        torch.testing.assert_close(scale_pe.frequencies, fresh, rtol=0, atol=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    torch.testing.assert_close(
        model.model.language_model.layers[0].mlp.up_proj.weight,
        plain.model.language_model.layers[0].mlp.up_proj.weight,
        rtol=0,
        atol=0,
    )


def test_outputs_carry_the_language_model_and_vision_fields_through():
    """Fields come from the LLM's output and the vision tower as they are, whatever their names
    in the installed transformers: the KV cache, hidden states and the projected tile tokens."""
    from transformers.cache_utils import Cache

    model = tiny_model().eval()
    batch = _batch()
    with torch.no_grad():
        out = model(**batch, use_cache=True, output_hidden_states=True)
        headless = model.model(
            **{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")},
            image_grids=batch["image_grids"],
            prompt_masks=batch["prompt_masks"],
            region_boxes=batch["region_boxes"],
        )
    caches = [v for v in out.values() if isinstance(v, Cache)]
    assert len(caches) == 1
    assert caches[0].get_seq_length() == batch["input_ids"].shape[1]
    num_layers = model.config.text_config.num_hidden_layers
    assert len(out.hidden_states) == num_layers + 1
    tiles = batch["pixel_values"].shape[0]
    pooled = out.image_outputs.pooler_output
    assert pooled.shape[0] == tiles
    assert pooled.shape[-1] == model.config.text_config.hidden_size
    torch.testing.assert_close(headless.image_outputs.pooler_output, pooled)
    torch.testing.assert_close(out.hidden_states[-1], headless.last_hidden_state, **CLOSE)
