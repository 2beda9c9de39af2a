"""A PerceptionLM checkpoint as a region model: its tokenizer learns the region tokens, its
embeddings grow to hold them, and its weights move into `RegionForConditionalGeneration`.

Loading a PerceptionLM checkpoint into the region model directly fails: the model's vocabulary
holds the region tokens and the checkpoint's does not, so the embedding and LM-head shapes
differ. Here the tokenizer adds the tokens (in the order `RegionConfig` expects), the base
model is resized with transformers' `resize_token_embeddings(mean_resizing=True)` (old rows
kept; new rows start at the old rows' mean, a sliver of noise apart, so a new token begins as
an average word instead of an outlier that would swamp the first steps' outputs), and its
state moves into a region model whose region token ids are the ones the tokenizer gave.
Only the region heads are left at their initialisation (zero mask prompts, uniform codebook
weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PerceptionLMForConditionalGeneration

from regionkit.modeling import RegionConfig, RegionForConditionalGeneration
from regionkit.modeling.configuration_region import region_token_names

REGION_HEADS = ("model.mask_prompt_encoder.", "codebook_fusion.", "pixel_decoder.")
"""What a PerceptionLM checkpoint cannot hold: the region model's own modules."""


def load_region_model(
    checkpoint: str | Path,
    tokenizer: Any = None,
    dtype: torch.dtype | None = None,
    **region_options: Any,
) -> tuple[RegionForConditionalGeneration, Any]:
    """The region model and its tokenizer from a PerceptionLM checkpoint (a folder or a Hub id).

    Args:
        checkpoint: what `PerceptionLMForConditionalGeneration.from_pretrained` reads.
        tokenizer: the checkpoint's tokenizer, when already loaded; else read from `checkpoint`.
        dtype: the weights' dtype.
        **region_options: `RegionConfig` arguments (`num_region_prompts`, `replay_grid`,
            `num_scales`, ...); their defaults otherwise. Token ids are set here.
    """
    base = PerceptionLMForConditionalGeneration.from_pretrained(checkpoint, dtype=dtype)
    tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(checkpoint)
    prompts = region_options.get("num_region_prompts", RegionConfig.num_region_prompts)
    scales = region_options.get("num_scales", RegionConfig.num_scales)
    per_scale = region_options.get("tokens_per_scale", RegionConfig.tokens_per_scale)
    names = region_token_names(prompts, scales, per_scale)
    tokenizer.add_tokens(names, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(names)
    vocab_size = max(base.get_input_embeddings().num_embeddings, len(tokenizer))
    base.resize_token_embeddings(vocab_size, mean_resizing=True)
    settings = {
        key: value
        for key, value in base.config.to_dict().items()
        if key not in ("model_type", "architectures", "transformers_version", "dtype")
    }
    settings["text_config"]["vocab_size"] = vocab_size
    config = RegionConfig(
        **settings,
        **region_options,
        region_prompt_token_ids=ids[:prompts],
        region_feature_token_id=ids[prompts],
        codebook_token_ids=ids[prompts + 1 : -1],
        reject_token_id=ids[-1],
    )
    model = RegionForConditionalGeneration(config)
    if dtype is not None:
        model = model.to(dtype)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    stray = [key for key in missing if not key.startswith(REGION_HEADS)]
    if unexpected or stray:
        raise ValueError(
            f"{checkpoint}: not a PerceptionLM checkpoint the region model can hold "
            f"(unexpected {unexpected[:5]}, missing {stray[:5]})"
        )
    return model, tokenizer
