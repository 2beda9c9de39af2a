"""Configuration of the region model: PerceptionLM plus region prompts, RoI replay, mask heads."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PerceptionLMConfig

from regionkit.modeling.checks import require_positive

from .attention import AUTO_ATTENTION, region_attn_implementation
from .losses import RegionLossWeights

__all__ = [
    "CODEBOOK_TOKEN",
    "REGION_FEATURE_TOKEN",
    "REGION_PROMPT_TOKEN",
    "REJECT_TOKEN",
    "RegionConfig",
    "region_token_count",
    "region_token_names",
]

REGION_PROMPT_TOKEN = "<|region_prompt_{index}|>"
REGION_FEATURE_TOKEN = "<|region_feature|>"
CODEBOOK_TOKEN = "<|codebook_{scale}_{token}|>"
REJECT_TOKEN = "<|reject|>"


def region_token_names(
    num_region_prompts: int, num_scales: int, tokens_per_scale: int
) -> list[str]:
    """The region model's token strings in the order a tokenizer must add them: prompt slots,
    the feature placeholder, the codebook (scale-major), reject."""
    names = [REGION_PROMPT_TOKEN.format(index=p) for p in range(num_region_prompts)]
    names.append(REGION_FEATURE_TOKEN)
    names += [
        CODEBOOK_TOKEN.format(scale=s, token=t)
        for s in range(num_scales)
        for t in range(tokens_per_scale)
    ]
    names.append(REJECT_TOKEN)
    return names


def region_token_count(num_region_prompts: int, num_scales: int, tokens_per_scale: int) -> int:
    """Tokens the region model adds: prompt slots, the placeholder, the codebook and reject."""
    return num_region_prompts + 1 + num_scales * tokens_per_scale + 1


@strict
class RegionConfig(PerceptionLMConfig):
    r"""PerceptionLM with region prompts in and codebook-decoded masks out.

    Token contract (what a processor writes for the dataset markup of DESIGN.md §3):

    - ``<regionK>`` (an input region) becomes ``<|region_prompt_P|>`` followed by ``replay_grid**2``
      ``<|region_feature|>`` placeholders. P in ``[0, num_region_prompts)`` is the prompt slot the
      processor gives region K in this sample; channel P of ``prompt_masks`` holds K's mask, so
      the prompt token, the mask prompt and the replayed features all name the same region. The
      j-th run of placeholders in a sample's sequence receives the RoI-aligned features of the
      j-th box in that sample's ``region_boxes`` (order of appearance; a region mentioned twice is
      listed twice).
    - ``<segK>`` (output region K's mask) becomes the ``num_scales * tokens_per_scale`` codebook
      tokens ``<|codebook_0_0|> ... <|codebook_{S-1}_{T-1}|>`` in that order (scale-major); the
      processor appends K's mask to the sample's ``target_masks`` in order of appearance.
    - ``<rej>`` (the asked-for thing is absent) becomes ``<|reject|>`` and yields no mask.

    Token ids: when all four id fields are left None they are laid out at the *end* of the text
    vocabulary in the order above (prompts, feature placeholder, codebook, reject), which is where
    ``tokenizer.add_tokens`` puts them when a processor adds ``special_tokens()`` in order and
    the embeddings are resized to ``text_config.vocab_size``. Give all four explicitly otherwise.

    Args:
        num_region_prompts: prompt slots P: prompt tokens and mask-prompt channels per sample.
        replay_grid: k; each region is replayed as ``k x k`` RoI-aligned feature tokens.
        replay_sampling_ratio: bilinear samples per bin side in ``roi_align`` (>= 1).
        vision_thumbnail: each image's tiles start with a whole-image thumbnail (PerceptionLM's
            ``vision_input_type="thumb+tile"``); False means grid tiles only.
        num_scales: S, pixel-decoder scales; codes per target.
        tokens_per_scale: T, codebook tokens per scale.
        decoder_vision_layers: S vision-block indices feeding the decoder, deepest first (scale 0
            is coarse). None spreads them evenly down from the last block.
        decoder_grid: the merged tile map of each layer is area-pooled to ``grid x grid`` before
            decoding; masks come out at ``grid * 2**S`` per side.
        decoder_dim, decoder_depth, decoder_heads, decoder_mlp_dim, decoder_mask_dim: width,
            two-way blocks per scale, heads, token-MLP width and mask-head channels of the decoder.
        region_prompt_token_ids: P ids of ``<|region_prompt_P|>``.
        region_feature_token_id: id of ``<|region_feature|>``.
        codebook_token_ids: S*T ids of the codebook tokens, scale-major.
        reject_token_id: id of ``<|reject|>``.
        loss_weights: weights by ``RegionLossWeights`` field (text, bce, dice, refinement, slot);
            missing keys take that dataclass's defaults.
        refinement_overlap_weight: weight of pixels claimed by two or more masks of one answer
            turn in the target refinement loss.
    """

    model_type = "regionkit"

    num_region_prompts: int = 16
    replay_grid: int = 16
    replay_sampling_ratio: int = 2
    vision_thumbnail: bool = True
    num_scales: int = 2
    tokens_per_scale: int = 3
    decoder_vision_layers: list[int] | tuple[int, ...] | None = None
    decoder_grid: int = 32
    decoder_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    decoder_mask_dim: int = 32
    region_prompt_token_ids: list[int] | tuple[int, ...] | None = None
    region_feature_token_id: int | None = None
    codebook_token_ids: list[int] | tuple[int, ...] | None = None
    reject_token_id: int | None = None
    loss_weights: dict | None = None
    refinement_overlap_weight: float = 2.0

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self._check_sizes()
        self._resolve_decoder_layers()
        self._resolve_token_ids()
        self._check_token_ids()
        self._resolve_loss_weights()
        if self._attn_implementation == AUTO_ATTENTION:
            self._attn_implementation = region_attn_implementation(AUTO_ATTENTION, self.dtype)

    @property
    def codebook_size(self) -> int:
        """Codebook tokens per target, ``num_scales * tokens_per_scale``."""
        return self.num_scales * self.tokens_per_scale

    @property
    def replay_tokens(self) -> int:
        """Placeholder tokens per region, ``replay_grid ** 2``."""
        return self.replay_grid**2

    @property
    def vision_depth(self) -> int | None:
        """Blocks of the vision tower when its config states them, else None."""
        model_args = getattr(self.vision_config, "model_args", None) or {}
        depth = model_args.get("depth")
        return int(depth) if depth is not None else None

    def special_tokens(self) -> dict[str, int]:
        """The model's token strings and ids, in the order a processor must add them."""
        names = region_token_names(self.num_region_prompts, self.num_scales, self.tokens_per_scale)
        return dict(zip(names, self._region_token_ids(), strict=True))

    def _region_token_ids(self) -> list[int]:
        return [
            *self.region_prompt_token_ids,
            self.region_feature_token_id,
            *self.codebook_token_ids,
            self.reject_token_id,
        ]

    def _check_sizes(self) -> None:
        sizes = {
            "num_region_prompts": self.num_region_prompts,
            "replay_grid": self.replay_grid,
            "replay_sampling_ratio": self.replay_sampling_ratio,
            "num_scales": self.num_scales,
            "tokens_per_scale": self.tokens_per_scale,
            "decoder_grid": self.decoder_grid,
            "decoder_dim": self.decoder_dim,
            "decoder_depth": self.decoder_depth,
            "decoder_heads": self.decoder_heads,
            "decoder_mlp_dim": self.decoder_mlp_dim,
            "decoder_mask_dim": self.decoder_mask_dim,
        }
        require_positive("RegionConfig", sizes)
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(
                f"decoder_dim ({self.decoder_dim}) must be divisible by decoder_heads "
                f"({self.decoder_heads})"
            )

    def _resolve_decoder_layers(self) -> None:
        depth = self.vision_depth
        if self.decoder_vision_layers is None:
            if depth is None:
                raise ValueError(
                    "decoder_vision_layers is None and vision_config.model_args has no 'depth' "
                    "to derive it from; set decoder_vision_layers explicitly"
                )
            step = max(1, depth // self.num_scales)
            self.decoder_vision_layers = [depth - 1 - s * step for s in range(self.num_scales)]
        layers = [int(layer) for layer in self.decoder_vision_layers]
        self.decoder_vision_layers = layers
        if len(layers) != self.num_scales:
            raise ValueError(
                f"decoder_vision_layers needs one layer per scale ({self.num_scales}), got {layers}"
            )
        upper = depth if depth is not None else float("inf")
        if any(not 0 <= layer < upper for layer in layers):
            raise ValueError(
                f"decoder_vision_layers must lie in [0, {upper}) (vision depth), got {layers}"
            )
        if any(a <= b for a, b in itertools.pairwise(layers)):
            raise ValueError(
                "decoder_vision_layers must be strictly decreasing (scale 0 is the deepest, "
                f"coarsest layer), got {layers}"
            )

    def _resolve_token_ids(self) -> None:
        fields = {
            "region_prompt_token_ids": self.region_prompt_token_ids,
            "region_feature_token_id": self.region_feature_token_id,
            "codebook_token_ids": self.codebook_token_ids,
            "reject_token_id": self.reject_token_id,
        }
        missing = [name for name, value in fields.items() if value is None]
        if len(missing) == len(fields):
            count = region_token_count(
                self.num_region_prompts, self.num_scales, self.tokens_per_scale
            )
            first = self.text_config.vocab_size - count
            ids = list(range(first, self.text_config.vocab_size))
            self.region_prompt_token_ids = ids[: self.num_region_prompts]
            self.region_feature_token_id = ids[self.num_region_prompts]
            self.codebook_token_ids = ids[self.num_region_prompts + 1 : -1]
            self.reject_token_id = ids[-1]
        elif missing:
            raise ValueError(
                f"give all region token ids or none (then they take the end of the vocabulary); "
                f"missing {missing}"
            )
        self.region_prompt_token_ids = [int(i) for i in self.region_prompt_token_ids]
        self.codebook_token_ids = [int(i) for i in self.codebook_token_ids]

    def _check_token_ids(self) -> None:
        counts = {
            "region_prompt_token_ids": (len(self.region_prompt_token_ids), self.num_region_prompts),
            "codebook_token_ids": (len(self.codebook_token_ids), self.codebook_size),
        }
        wrong = {name: got for name, (got, want) in counts.items() if got != want}
        if wrong:
            raise ValueError(
                f"token id lists have the wrong length: got {wrong}, want num_region_prompts="
                f"{self.num_region_prompts} prompt ids and num_scales * tokens_per_scale="
                f"{self.codebook_size} codebook ids"
            )
        vocab_size = self.text_config.vocab_size
        ids = {"image_token_id": self.image_token_id, "video_token_id": self.video_token_id}
        ids.update(zip(self.special_tokens(), self._region_token_ids(), strict=True))
        outside = {name: i for name, i in ids.items() if not 0 <= i < vocab_size}
        if outside:
            raise ValueError(f"token ids must lie in [0, {vocab_size}) (text vocab), got {outside}")
        seen: dict[int, str] = {}
        for name, token_id in ids.items():
            if token_id in seen:
                raise ValueError(f"{name} and {seen[token_id]} share the token id {token_id}")
            seen[token_id] = name

    def _resolve_loss_weights(self) -> None:
        given = dict(self.loss_weights or {})
        known = [field.name for field in dataclasses.fields(RegionLossWeights)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"unknown loss_weights keys {unknown}; known keys are {known}")
        weights = RegionLossWeights(**{name: float(value) for name, value in given.items()})
        self.loss_weights = dataclasses.asdict(weights)
        if not self.refinement_overlap_weight > 0:
            raise ValueError(
                f"refinement_overlap_weight must be > 0, got {self.refinement_overlap_weight}"
            )

    def region_loss_weights(self) -> RegionLossWeights:
        """``loss_weights`` as the ``RegionLossWeights`` dataclass."""
        return RegionLossWeights(**self.loss_weights)
