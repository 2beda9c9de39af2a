"""Mask prompt encoder: zero start, prompt identity, and the hooks that carry it into timm."""

from __future__ import annotations

import pytest
import torch
from transformers import PerceptionLMForConditionalGeneration

from regionkit.modeling import MaskPromptEncoder, tiny_region_config
from regionkit.modeling.mask_prompt import PROMPT_MASKS_KWARG

from .region_batches import TILE_PIXELS, tiny_model

NUM_TILES = 3


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(NUM_TILES, 3, TILE_PIXELS, TILE_PIXELS, generator=generator)
    masks = torch.zeros(NUM_TILES, 3, TILE_PIXELS, TILE_PIXELS)
    masks[:, 0, 10:40, 5:30] = 1
    return pixels, masks


def _randomise(encoder: MaskPromptEncoder) -> None:
    with torch.no_grad():
        encoder.weight.normal_(generator=torch.Generator().manual_seed(3))


def test_encoder_starts_at_zero_and_keeps_prompt_identity():
    encoder = MaskPromptEncoder(num_prompts=3, embed_dim=8, patch_size=14)
    masks = torch.zeros(1, 3, 28, 28)
    masks[0, 0, :14, :14] = 1
    assert encoder(masks).abs().sum() == 0
    _randomise(encoder)
    other = masks.roll(1, dims=1)  # the same region under prompt slot 1
    first, second = encoder(masks), encoder(other)
    assert first.shape == (1, 8, 2, 2)
    assert not torch.allclose(first, second)


def test_zero_initialised_encoder_leaves_the_tower_unchanged():
    model = tiny_model()
    pixels, masks = _inputs()
    with torch.no_grad():
        plain = model.model.get_image_features(pixels).pooler_output
        prompted = model.model.get_image_features(pixels, prompt_masks=masks).pooler_output
    torch.testing.assert_close(prompted, plain, rtol=0, atol=0)


def test_trained_encoder_changes_features_and_tells_prompts_apart():
    model = tiny_model()
    _randomise(model.model.mask_prompt_encoder)
    pixels, masks = _inputs()
    with torch.no_grad():
        plain = model.model.get_image_features(pixels).pooler_output
        slot0 = model.model.get_image_features(pixels, prompt_masks=masks).pooler_output
        slot1 = model.model.get_image_features(
            pixels, prompt_masks=masks.roll(1, dims=1)
        ).pooler_output
    assert not torch.allclose(slot0, plain)
    assert not torch.allclose(slot0, slot1)


def test_masks_reach_timm_through_the_tower_kwargs_and_never_leak():
    model = tiny_model()
    _randomise(model.model.mask_prompt_encoder)
    tower = model.model.vision_tower
    pixels, masks = _inputs()
    with torch.no_grad():
        baseline = tower(pixels).last_hidden_state
        prompted = tower(pixels, **{PROMPT_MASKS_KWARG: masks}).last_hidden_state
        after = tower(pixels).last_hidden_state
        with pytest.raises(ValueError, match="tiled exactly like pixel_values"):
            tower(pixels, **{PROMPT_MASKS_KWARG: masks[:, :, :28, :28]})
        after_error = tower(pixels).last_hidden_state
    assert not torch.allclose(prompted, baseline)
    torch.testing.assert_close(after, baseline, rtol=0, atol=0)
    torch.testing.assert_close(after_error, baseline, rtol=0, atol=0)


def test_unused_prompt_slots_may_be_left_out_and_too_many_raise():
    model = tiny_model()
    _randomise(model.model.mask_prompt_encoder)
    pixels, masks = _inputs()
    masks[:, 2] = 0  # slot 2 unused
    with torch.no_grad():
        full = model.model.get_image_features(pixels, prompt_masks=masks).pooler_output
        two = model.model.get_image_features(pixels, prompt_masks=masks[:, :2]).pooler_output
    torch.testing.assert_close(two, full, rtol=0, atol=0)
    with torch.no_grad():  # a batch that names no region sends no slot at all
        none = model.model.get_image_features(pixels, prompt_masks=masks[:, :0]).pooler_output
        plain = model.model.get_image_features(pixels).pooler_output
    torch.testing.assert_close(none, plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match="at most num_region_prompts=3"):
        model.model.get_image_features(pixels, prompt_masks=torch.cat([masks, masks[:, :1]], 1))


def test_vision_tower_state_dict_keys_match_perception_lm():
    config = tiny_region_config()
    region_keys = set(tiny_model().state_dict())
    plain_keys = set(PerceptionLMForConditionalGeneration(config).state_dict())
    assert plain_keys <= region_keys
    assert "model.vision_tower.timm_model.patch_embed.proj.weight" in region_keys
    assert {key for key in region_keys - plain_keys if "vision_tower" in key} == set()


def test_a_prompt_lands_on_the_patches_its_mask_covers():
    """A mask over a tile's top-right patch (row 0, column 3 of 4 x 4) changes that patch's
    embedding alone: a transposed embedding would change row 3, column 0."""
    model = tiny_model()
    encoder = model.model.mask_prompt_encoder
    with torch.no_grad():
        encoder.weight.zero_()
        encoder.weight[:, 0] = 1.0
    patch_embed = model.model.vision_tower.timm_model.patch_embed
    seen: list[torch.Tensor] = []
    handle = patch_embed.register_forward_hook(lambda module, args, out: seen.append(out))
    pixels = torch.randn(1, 3, TILE_PIXELS, TILE_PIXELS)
    masks = torch.zeros(1, 3, TILE_PIXELS, TILE_PIXELS)
    masks[0, 0, 0:14, 42:56] = 1  # rows are y: the top-right patch
    with torch.no_grad():
        model.model.vision_tower(pixels)
        model.model.vision_tower(pixels, **{PROMPT_MASKS_KWARG: masks})
    handle.remove()
    change = (seen[1] - seen[0]).reshape(16, -1).abs().sum(dim=1)
    assert change.nonzero().flatten().tolist() == [3]
