"""A PerceptionLM checkpoint without region tokens becomes a region model: the tokenizer learns
the tokens, old embedding rows are kept, new ones start near them, the rest loads unchanged."""

from __future__ import annotations

import pytest
import torch
from transformers import PerceptionLMConfig, PerceptionLMForConditionalGeneration

from regionkit.modeling import RegionForConditionalGeneration, tiny_region_config
from regionkit.train.checkpoint import load_region_model
from regionkit.train.tiny_tokenizer import tiny_tokenizer

REGION_ONLY = {"num_region_prompts", "replay_grid", "replay_sampling_ratio", "vision_thumbnail",
               "num_scales", "tokens_per_scale", "decoder_vision_layers", "decoder_grid",
               "decoder_dim", "decoder_depth", "decoder_heads", "decoder_mlp_dim",
               "decoder_mask_dim", "region_prompt_token_ids", "region_feature_token_id",
               "codebook_token_ids", "reject_token_id", "loss_weights",
               "refinement_overlap_weight"}  # fmt: skip
REGION_OPTIONS = {
    key: getattr(tiny_region_config(), key)
    for key in ("num_region_prompts", "replay_grid", "num_scales", "tokens_per_scale",
                "decoder_vision_layers", "decoder_grid", "decoder_dim", "decoder_depth",
                "decoder_heads", "decoder_mlp_dim", "decoder_mask_dim")
}  # fmt: skip


@pytest.fixture
def base_checkpoint(tmp_path):
    """A tiny PerceptionLM (text ids 0-63, image 64, video 65) and its tokenizer, saved."""
    settings = {
        key: value
        for key, value in tiny_region_config().to_dict().items()
        if key not in REGION_ONLY | {"model_type", "architectures", "transformers_version"}
    }
    settings["text_config"]["vocab_size"] = 66
    torch.manual_seed(0)
    base = PerceptionLMForConditionalGeneration(PerceptionLMConfig(**settings))
    tokenizer = tiny_tokenizer()
    filler = [f"<|reserved_{i}|>" for i in range(64 - len(tokenizer))]
    tokenizer.add_tokens([*filler, "<|image|>", "<|video|>"], special_tokens=True)
    assert tokenizer.convert_tokens_to_ids("<|image|>") == 64
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    return tmp_path / "base", base


def test_a_checkpoint_without_region_tokens_cannot_be_loaded_as_is(base_checkpoint):
    folder, _ = base_checkpoint
    with pytest.raises((RuntimeError, ValueError), match="size"):
        RegionForConditionalGeneration.from_pretrained(folder, config=tiny_region_config())


def test_the_region_model_gets_the_tokens_the_old_rows_and_the_weights(base_checkpoint):
    folder, base = base_checkpoint
    model, tokenizer = load_region_model(folder, **REGION_OPTIONS)
    config = model.config
    names = list(config.special_tokens())
    assert tokenizer.convert_tokens_to_ids(names) == list(config.special_tokens().values())
    assert list(config.special_tokens().values()) == list(range(66, 75))  # after image, video
    assert tokenizer("<|reject|>", add_special_tokens=False)["input_ids"] == [
        config.reject_token_id
    ]

    old = base.get_input_embeddings().weight
    new = model.get_input_embeddings().weight
    assert new.shape == (75, old.shape[1])
    torch.testing.assert_close(new[:66], old, rtol=0, atol=0)
    added = new[66:]
    assert torch.isfinite(added).all() and added.abs().sum() > 0
    # new rows start at the old rows' mean (a sliver of noise apart), not at zero or at random
    mean = old.mean(dim=0)
    spread = (old - mean).norm(dim=1).mean()
    assert (added - mean).norm(dim=1).max() < 0.01 * spread
    assert mean.norm() > 0.1 * spread

    base_state = base.state_dict()
    for key, value in model.state_dict().items():
        if key in base_state and "embed_tokens" not in key and key != "lm_head.weight":
            torch.testing.assert_close(value, base_state[key], rtol=0, atol=0)
    assert model.model.mask_prompt_encoder.weight.abs().sum() == 0
