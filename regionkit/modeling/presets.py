"""Ready-made region model configs: the GAR-1B and GAR-8B geometries, and a tiny one for tests.

The GAR presets replicate PerceptionLM-1B/8B (the bases of GAR-1B/8B) and add our heads. The
text vocabulary is Llama-3's 128256 entries plus the region model's tokens, which
``RegionConfig`` lays out right after them (``RegionConfig.special_tokens()`` in order). Rope
settings follow the Llama 3.2 / 3.1 releases; when loading real PerceptionLM weights, the
checkpoint's own config.json is the authority for everything but the region fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .configuration_region import RegionConfig, region_token_count

__all__ = ["LLAMA3_VOCAB_SIZE", "gar_1b_config", "gar_8b_config", "tiny_region_config"]

LLAMA3_VOCAB_SIZE = 128256
PLM_IMAGE_TOKEN_ID = 128002  # <|image|> in PerceptionLM's tokenizer
PLM_VIDEO_TOKEN_ID = 128003  # <|video|>
PLM_BOS_TOKEN_ID = 128000  # <|begin_of_text|>
PLM_EOS_TOKEN_IDS = [128001, 128009]  # <|end_of_text|>, <|eot_id|>
PLM_TILE_SIZE = 448
PLM_PATCH_SIZE = 14
PLM_MAX_POSITIONS = 11520
PLM_PROJECTOR_POOLING = 2  # 32 x 32 patches per tile -> 16 x 16 LLM tokens
LAYER_SCALE_INIT = 0.1


def _region_token_count(region_fields: dict[str, Any]) -> int:
    """How many tokens ``region_fields`` (over ``RegionConfig``'s defaults) add to the vocab."""
    defaults = {field.name: field.default for field in dataclasses.fields(RegionConfig)}
    counts = {**defaults, **region_fields}
    return region_token_count(
        counts["num_region_prompts"], counts["num_scales"], counts["tokens_per_scale"]
    )


def _pe_vision_config(architecture: str, width: int, depth: int) -> dict[str, Any]:
    """PerceptionLM's timm PE tower: 448 px tiles, 32 x 32 patches, no post-norm or pooling."""
    feat = PLM_TILE_SIZE // PLM_PATCH_SIZE
    return {
        "architecture": architecture,
        "model_args": {
            "embed_dim": width,
            "depth": depth,
            "img_size": [PLM_TILE_SIZE, PLM_TILE_SIZE],
            "ref_feat_shape": [feat, feat],
            "global_pool": "",
            "use_post_transformer_norm": False,
            "init_values": LAYER_SCALE_INIT,
        },
    }


def _llama3_text_config(
    hidden: int,
    layers: int,
    intermediate: int,
    rope_factor: float,
    tie: bool,
    vocab_size: int,
) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": intermediate,
        "max_position_embeddings": PLM_MAX_POSITIONS,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": rope_factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "tie_word_embeddings": tie,
        "bos_token_id": PLM_BOS_TOKEN_ID,
        "eos_token_id": PLM_EOS_TOKEN_IDS,
    }


def _gar_config(
    vision: dict[str, Any], use_cls: bool, text: dict[str, Any], overrides: dict[str, Any]
) -> RegionConfig:
    return RegionConfig(
        vision_config=vision,
        text_config=text,
        vision_use_cls_token=use_cls,
        projector_pooling_ratio=PLM_PROJECTOR_POOLING,
        image_token_id=PLM_IMAGE_TOKEN_ID,
        video_token_id=PLM_VIDEO_TOKEN_ID,
        tie_word_embeddings=text["tie_word_embeddings"],
        **overrides,
    )


def gar_1b_config(**region_fields: Any) -> RegionConfig:
    """PerceptionLM-1B geometry (GAR-1B's base) with the region heads.

    Vision: timm ``vit_pe_core_large_patch14_336`` re-parameterised to width 1024, 23 blocks,
    448 px tiles, ``ref_feat_shape (32, 32)``, class token. Projector: 2x2 pooling (256 tokens per
    tile). LLM: Llama-3.2-1B (hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192, tied
    embeddings), vocabulary 128256 plus the region tokens. ``region_fields`` override any
    ``RegionConfig`` region field (e.g. ``num_region_prompts=8``).
    """
    vocab = LLAMA3_VOCAB_SIZE + _region_token_count(region_fields)
    return _gar_config(
        _pe_vision_config("vit_pe_core_large_patch14_336", width=1024, depth=23),
        use_cls=True,
        text=_llama3_text_config(2048, 16, 8192, rope_factor=32.0, tie=True, vocab_size=vocab),
        overrides=region_fields,
    )


def gar_8b_config(**region_fields: Any) -> RegionConfig:
    """PerceptionLM-8B geometry (GAR-8B's base) with the region heads.

    Vision: timm ``vit_pe_core_gigantic_patch14_448`` at width 1536, 47 blocks, 448 px tiles, no
    class token. Projector: 2x2 pooling. LLM: Llama-3.1-8B (hidden 4096, 32 layers, 32 heads, 8
    KV heads, MLP 14336, untied), vocabulary 128256 plus the region tokens.
    """
    vocab = LLAMA3_VOCAB_SIZE + _region_token_count(region_fields)
    return _gar_config(
        _pe_vision_config("vit_pe_core_gigantic_patch14_448", width=1536, depth=47),
        use_cls=False,
        text=_llama3_text_config(4096, 32, 14336, rope_factor=8.0, tie=False, vocab_size=vocab),
        overrides=region_fields,
    )


TINY_TEXT_VOCAB = 64  # ordinary text ids 0..63; 0 pad, 1 bos, 2 eos
TINY_IMAGE_TOKEN_ID = 64
TINY_VIDEO_TOKEN_ID = 65


def tiny_region_config(**overrides: Any) -> RegionConfig:
    """A few-hundred-thousand-parameter region model for CPU tests and benchmarks.

    Vision: PE-style tower, width 32, 2 blocks, 56 px tiles of 14 px patches (4 x 4 patches),
    projector pooling 2 (2 x 2 = 4 LLM tokens per tile). LLM: hidden 32, 2 layers, 4 heads, 2 KV
    heads. Vocabulary: text ids 0-63, image 64, video 65, then 3 prompt slots, the region
    placeholder, 2 x 2 codebook tokens and reject (ids 66-74). Replay 2 x 2, decoder grid 4,
    so masks come out at 16 x 16. ``overrides`` replace any ``RegionConfig`` argument; changing a
    region count also moves the region token ids, which stay at the end of the vocabulary.
    """
    fields: dict[str, Any] = {
        "num_region_prompts": 3,
        "replay_grid": 2,
        "num_scales": 2,
        "tokens_per_scale": 2,
        "decoder_vision_layers": [1, 0],
        "decoder_grid": 4,
        "decoder_dim": 32,
        "decoder_depth": 1,
        "decoder_heads": 2,
        "decoder_mlp_dim": 64,
        "decoder_mask_dim": 8,
        "projector_pooling_ratio": 2,
        "vision_use_cls_token": True,
        "image_token_id": TINY_IMAGE_TOKEN_ID,
        "video_token_id": TINY_VIDEO_TOKEN_ID,
        "tie_word_embeddings": True,
    }
    fields.update(overrides)
    region_count = region_token_count(
        fields["num_region_prompts"], fields["num_scales"], fields["tokens_per_scale"]
    )
    text_config = {
        "model_type": "llama",
        "vocab_size": TINY_VIDEO_TOKEN_ID + 1 + region_count,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    vision_config = {
        "architecture": "vit_pe_core_large_patch14_336",
        "model_args": {
            "embed_dim": 32,
            "depth": 2,
            "num_heads": 2,
            "img_size": [56, 56],
            "ref_feat_shape": [4, 4],
            "global_pool": "",
            "use_post_transformer_norm": False,
            "init_values": LAYER_SCALE_INIT,
        },
    }
    fields.setdefault("text_config", text_config)
    fields.setdefault("vision_config", vision_config)
    return RegionConfig(**fields)
