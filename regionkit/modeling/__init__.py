"""The region model: mask prompts in, RoI-align feature replay, and a codebook pixel decoder out."""

from transformers import AutoConfig

from .attention import resolve_attn_implementation
from .codebook import CodebookFusion
from .configuration_region import RegionConfig
from .losses import RegionLossWeights
from .mask_prompt import MaskPromptEncoder
from .modeling_region import (
    RegionCausalLMOutputWithPast,
    RegionForConditionalGeneration,
    RegionGenerateOutput,
    RegionModel,
    RegionModelOutputWithPast,
)
from .pixel_decoder import PixelDecoder
from .presets import gar_1b_config, gar_8b_config, tiny_region_config
from .roi_replay import replay_regions

# Saved region models name their type "regionkit": tell the Auto classes what that is, so
# AutoConfig and AutoTokenizer read their folders like any transformers model's.
AutoConfig.register(RegionConfig.model_type, RegionConfig, exist_ok=True)

__all__ = [
    "CodebookFusion",
    "MaskPromptEncoder",
    "PixelDecoder",
    "RegionCausalLMOutputWithPast",
    "RegionConfig",
    "RegionForConditionalGeneration",
    "RegionGenerateOutput",
    "RegionLossWeights",
    "RegionModel",
    "RegionModelOutputWithPast",
    "gar_1b_config",
    "gar_8b_config",
    "replay_regions",
    "resolve_attn_implementation",
    "tiny_region_config",
]
