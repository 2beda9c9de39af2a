"""RegionConfig: token layout, validation messages, round trip, and "auto" attention resolution."""

from __future__ import annotations

import pytest
import torch

from regionkit.modeling import RegionConfig, attention, tiny_region_config
from regionkit.modeling.presets import TINY_IMAGE_TOKEN_ID, TINY_VIDEO_TOKEN_ID


def test_region_tokens_default_to_the_end_of_the_vocabulary_in_contract_order():
    config = tiny_region_config()
    tokens = config.special_tokens()
    vocab = config.text_config.vocab_size
    assert list(tokens.values()) == list(range(vocab - len(tokens), vocab))
    assert list(tokens)[:4] == [
        "<|region_prompt_0|>",
        "<|region_prompt_1|>",
        "<|region_prompt_2|>",
        "<|region_feature|>",
    ]
    assert list(tokens)[4:] == [
        "<|codebook_0_0|>",
        "<|codebook_0_1|>",
        "<|codebook_1_0|>",
        "<|codebook_1_1|>",
        "<|reject|>",
    ]
    assert config.codebook_token_ids == [tokens[name] for name in list(tokens)[4:8]]
    assert config.codebook_size == 4 and config.replay_tokens == 4


def test_explicit_token_ids_are_kept():
    config = tiny_region_config(
        region_prompt_token_ids=(10, 11, 12),
        region_feature_token_id=13,
        codebook_token_ids=[14, 15, 16, 17],
        reject_token_id=18,
    )
    assert config.region_prompt_token_ids == [10, 11, 12]
    assert config.reject_token_id == 18


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"reject_token_id": 5}, "give all region token ids or none"),
        (
            {
                "region_prompt_token_ids": [10, 11],
                "region_feature_token_id": 13,
                "codebook_token_ids": [14, 15, 16, 17],
                "reject_token_id": 18,
            },
            "wrong length: got \\{'region_prompt_token_ids': 2\\}",
        ),
        (
            {
                "region_prompt_token_ids": [10, 11, 12],
                "region_feature_token_id": 13,
                "codebook_token_ids": [14, 15, 16, 17],
                "reject_token_id": 500,
            },
            "token ids must lie in \\[0, 75\\).*'<\\|reject\\|>': 500",
        ),
        (
            {
                "region_prompt_token_ids": [10, 11, 12],
                "region_feature_token_id": TINY_IMAGE_TOKEN_ID,
                "codebook_token_ids": [14, 15, 16, 17],
                "reject_token_id": 18,
            },
            f"share the token id {TINY_IMAGE_TOKEN_ID}",
        ),
        ({"decoder_vision_layers": [0, 1]}, "strictly decreasing.*\\[0, 1\\]"),
        ({"decoder_vision_layers": [2, 0]}, "must lie in \\[0, 2\\).*\\[2, 0\\]"),
        ({"decoder_vision_layers": [1]}, "one layer per scale \\(2\\), got \\[1\\]"),
        ({"replay_grid": 0}, "sizes must be >= 1, got \\{'replay_grid': 0\\}"),
        ({"decoder_dim": 30, "decoder_heads": 4}, "decoder_dim \\(30\\) must be divisible"),
        ({"loss_weights": {"mask": 1.0}}, "unknown loss_weights keys \\['mask'\\]"),
        ({"loss_weights": {"bce": -1.0}}, "finite and >= 0"),
        ({"refinement_overlap_weight": 0.0}, "refinement_overlap_weight must be > 0, got 0.0"),
    ],
)
def test_invalid_configs_raise_quoting_the_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_region_config(**overrides)


def test_decoder_layers_default_to_evenly_spaced_from_the_last_block():
    config = tiny_region_config(decoder_vision_layers=None)
    assert config.decoder_vision_layers == [1, 0]


def test_loss_weights_are_completed_and_round_trip(tmp_path):
    config = tiny_region_config(loss_weights={"bce": 1.5})
    assert config.loss_weights["bce"] == 1.5 and config.loss_weights["dice"] == 0.5
    config.save_pretrained(tmp_path)
    loaded = RegionConfig.from_pretrained(tmp_path)
    assert loaded.special_tokens() == config.special_tokens()
    assert loaded.loss_weights == config.loss_weights
    assert loaded.decoder_vision_layers == config.decoder_vision_layers
    assert loaded.image_token_id == TINY_IMAGE_TOKEN_ID
    assert loaded.video_token_id == TINY_VIDEO_TOKEN_ID


@pytest.mark.parametrize(
    "importable,cuda,dtype,expected",
    [
        (True, True, torch.bfloat16, "flash_attention_2"),
        (True, True, "float16", "flash_attention_2"),
        (True, True, torch.float32, "sdpa"),
        (True, False, torch.bfloat16, "sdpa"),
        (False, True, torch.bfloat16, "sdpa"),
        (True, True, None, "sdpa"),
    ],
)
def test_auto_attention_decision(monkeypatch, importable, cuda, dtype, expected):
    monkeypatch.setattr(attention, "flash_attn_importable", lambda: importable)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert attention.resolve_attn_implementation("auto", dtype) == expected
    assert attention.region_attn_implementation("auto", dtype) == {
        "": expected,
        "text_config": expected,
        "vision_config": "sdpa",
    }


def test_explicit_attention_passes_through():
    assert attention.resolve_attn_implementation("eager", torch.bfloat16) == "eager"
    assert attention.region_attn_implementation(None, None) is None


def test_config_resolves_auto_attention():
    config = tiny_region_config(attn_implementation="auto")
    assert config._attn_implementation == "sdpa"
    assert config.text_config._attn_implementation == "sdpa"
    assert config.vision_config._attn_implementation == "sdpa"
