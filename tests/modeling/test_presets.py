"""GAR-1B/8B presets on the meta device: parameter counts against the architecture formulas."""

from __future__ import annotations

import pytest
import torch

from regionkit.modeling import (
    CodebookFusion,
    PixelDecoder,
    RegionForConditionalGeneration,
    gar_1b_config,
    gar_8b_config,
)

LLAMA3_VOCAB = 128256
PATCH, TILE = 14, 448


def vit_params(width: int, depth: int, mlp: int, class_token: bool) -> int:
    """timm PE (Eva) without head: patch embed, pos embed, pre-norm, blocks with layer scale."""
    tokens = (TILE // PATCH) ** 2 + class_token
    block = (
        2 * width  # layer-scale gammas
        + 2 * 2 * width  # two LayerNorms
        + 3 * width * width
        + 3 * width  # fused qkv + bias
        + width * width
        + width  # attention output
        + width * mlp
        + mlp
        + mlp * width
        + width  # MLP
    )
    stem = 3 * PATCH * PATCH * width + tokens * width + class_token * width + 2 * width
    return stem + depth * block


def llama_params(
    vocab: int, hidden: int, layers: int, heads: int, kv_heads: int, mlp: int, tied: bool
) -> int:
    kv_width = kv_heads * hidden // heads
    layer = 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * mlp + 2 * hidden
    return vocab * hidden * (1 if tied else 2) + layers * layer + hidden


def projector_params(width: int, hidden: int) -> int:
    return width * hidden + hidden + hidden * hidden + hidden


def head_params(config, hidden: int, width: int) -> int:
    """Codebook fusion and pixel decoder, built on their own (their internals are tested there)."""
    with torch.device("meta"):
        fusion = CodebookFusion(
            config.num_scales, config.tokens_per_scale, hidden, config.decoder_dim
        )
        decoder = PixelDecoder(
            config.num_scales,
            config.decoder_dim,
            width,
            depth=config.decoder_depth,
            num_heads=config.decoder_heads,
            mlp_dim=config.decoder_mlp_dim,
            mask_dim=config.decoder_mask_dim,
        )
    return sum(p.numel() for module in (fusion, decoder) for p in module.parameters())


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "make_config,vision,llm,total_range",
    [
        (gar_1b_config, (1024, 23, 4096, True), (2048, 16, 32, 8, 8192, True), (1.5e9, 2.5e9)),
        (gar_8b_config, (1536, 47, 8960, False), (4096, 32, 32, 8, 14336, False), (8e9, 10e9)),
    ],
)
def test_preset_parameter_counts_match_the_formulas(make_config, vision, llm, total_range):
    config = make_config()
    width, depth, mlp, class_token = vision
    hidden, layers, heads, kv_heads, llm_mlp, tied = llm
    num_region_tokens = (
        config.num_region_prompts + 1 + config.num_scales * config.tokens_per_scale + 1
    )
    vocab = LLAMA3_VOCAB + num_region_tokens
    assert config.text_config.vocab_size == vocab
    assert config.vision_use_cls_token == class_token
    with torch.device("meta"):
        model = RegionForConditionalGeneration(config)

    expected = {
        "vision": vit_params(width, depth, mlp, class_token),
        "projector": projector_params(width, hidden),
        "llm": llama_params(vocab, hidden, layers, heads, kv_heads, llm_mlp, tied),
        "mask prompts": config.num_region_prompts * width * PATCH * PATCH,
        "heads": head_params(config, hidden, width),
    }
    got = {
        "vision": count(model.model.vision_tower),
        "projector": count(model.model.multi_modal_projector),
        "llm": count(model.model.language_model) + (0 if tied else count(model.lm_head)),
        "mask prompts": count(model.model.mask_prompt_encoder),
        "heads": count(model.codebook_fusion) + count(model.pixel_decoder),
    }
    assert got == expected
    total = count(model)
    assert total == sum(expected.values())
    assert total_range[0] < total < total_range[1]


def test_presets_keep_perception_lm_geometry():
    for config in (gar_1b_config(), gar_8b_config()):
        tokens_per_tile = (TILE // PATCH // config.projector_pooling_ratio) ** 2
        assert tokens_per_tile == 256
        assert config.image_token_id == 128002
        assert min(config.special_tokens().values()) == LLAMA3_VOCAB


def test_preset_region_fields_can_be_overridden():
    config = gar_1b_config(num_region_prompts=8, replay_grid=8)
    assert config.text_config.vocab_size == LLAMA3_VOCAB + 8 + 1 + 6 + 1
    assert config.replay_tokens == 64
