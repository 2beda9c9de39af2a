"""The region model: PerceptionLM that reads regions (mask prompts, RoI replay) and writes masks.

Inputs of one batch (B samples, sequence length L):

- ``input_ids``, ``attention_mask``: ``(B, L)``, left or right padded. When ``position_ids`` is
  not given, positions count attended tokens only, so padding never shifts a sample.
- ``pixel_values``: ``(sum_b tiles_b, 3, H, W)``, every sample's tiles packed in batch order;
  per sample a thumbnail (if ``config.vision_thumbnail``) then ``tiles_h * tiles_w`` tiles,
  row-major (``tiles.TileLayout``). Every sample of an image batch has one image.
- ``image_grids``: ``(B, 2)`` integer ``(tiles_h, tiles_w)`` per sample.
- ``prompt_masks``: ``(sum_b tiles_b, C, H, W)`` in ``[0, 1]``, ``C <= num_region_prompts``,
  tiled exactly like ``pixel_values``; channel p is the mask of the region holding prompt slot p
  (overlaps are fine), zeros for unused slots; slots past C are unused. Optional.
- ``region_boxes``: B tensors ``(R_b, 4)``, normalised xyxy of the original image, one per run of
  region placeholders in that sample's sequence, in order of appearance (``roi_replay``).
- ``labels``: ``(B, L)`` next-token targets, ``-100`` where there is no text loss.
- ``target_masks``: B tensors ``(N_b, H_b, W_b)`` in ``[0, 1]``, one per codebook group of that
  sample, in order of appearance, at any resolution (predictions are resized to it).

Which hidden state drives a mask: each codebook token's *own* output state (the state computed
with that token in the input), not the state of the position before it (LISA/PixelLM's choice).
The position before a target must decide between ``<|codebook_0_0|>`` and ``<|reject|>``;
keeping the mask query on the codebook tokens themselves separates that decision from the mask
description, and all S*T states exist after generation because ``generate`` re-reads the whole
generated sequence once (see ``RegionForConditionalGeneration.generate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.perception_lm.modeling_perception_lm import (
    PerceptionLMCausalLMOutputWithPast,
    PerceptionLMForConditionalGeneration,
    PerceptionLMModel,
    PerceptionLMModelOutputWithPast,
    PerceptionLMPreTrainedModel,
)
from transformers.models.timm_wrapper.modeling_timm_wrapper import TimmWrapperModelOutput
from transformers.utils import can_return_tuple

from .attention import AUTO_ATTENTION, region_attn_implementation
from .codebook import CodebookFusion
from .configuration_region import RegionConfig
from .losses import (
    combine_losses,
    mask_bce_loss,
    mask_dice_loss,
    slot_decision_loss,
    target_refinement_loss,
)
from .mask_prompt import PROMPT_MASKS_KWARG, MaskPromptEncoder
from .pixel_decoder import FourierPositionEncoding, PixelDecoder, upsample_masks
from .roi_replay import check_region_boxes, replay_regions
from .tiles import TileLayout, merge_tiles
from .token_layout import (
    CodebookGroups,
    answer_turn_ids,
    find_codebook_groups,
    placeholder_runs,
    position_ids_from_attention_mask,
)

__all__ = [
    "RegionCausalLMOutputWithPast",
    "RegionForConditionalGeneration",
    "RegionGenerateOutput",
    "RegionModel",
    "RegionModelOutputWithPast",
    "RegionPreTrainedModel",
]


@dataclass
class RegionModelOutputWithPast(PerceptionLMModelOutputWithPast):
    """``PerceptionLMModelOutputWithPast`` plus the pixel decoder's inputs.

    ``image_outputs`` is the vision tower's output: ``pooler_output`` the packed projected tile
    tokens ``(num_tiles, tokens_per_tile, llm_dim)``, ``hidden_states`` the decoder layers.

    Attributes:
        decoder_features: S tensors ``(B, vision_dim, G, G)`` (G = ``decoder_grid``), each
            sample's merged tile map of vision layer ``decoder_vision_layers[s]``, area-pooled;
            None without ``pixel_values``.
    """

    decoder_features: list[Tensor] | None = None


@dataclass
class RegionCausalLMOutputWithPast(PerceptionLMCausalLMOutputWithPast):
    """``PerceptionLMCausalLMOutputWithPast`` plus masks and the loss broken down.

    Attributes:
        pred_masks: B tensors ``(N_b, h, w)`` of mask logits, one per complete codebook group in
            order of appearance; ``(h, w)`` is the target mask's size when ``target_masks`` is
            given, else ``mask_sizes[b]``, else the decoder's ``decoder_grid * 2**S``. None when
            no masks were decoded (no ``pixel_values``, or ``decode_masks=False``).
        target_positions: B tensors ``(N_b,)``, the sequence position of each group's first
            codebook token.
        loss_parts: the unweighted loss terms by ``RegionLossWeights`` field name.
    """

    pred_masks: list[Tensor] | None = None
    target_positions: list[Tensor] | None = None
    loss_parts: dict[str, Tensor] | None = None


@dataclass
class RegionGenerateOutput(ModelOutput):
    """What ``RegionForConditionalGeneration.generate`` returns.

    Attributes:
        sequences: ``(B, L_prompt + new)`` prompt and generated ids (padded after EOS).
        pred_masks: B tensors ``(N_b, h, w)`` of mask logits, one per complete codebook group the
            model generated (``<|reject|>`` yields none; a group cut off by the length limit is
            dropped); None without ``pixel_values``.
        target_positions: B tensors ``(N_b,)``, positions in ``sequences`` of each group's first
            codebook token.
        generation: the raw ``generate`` output when it was a ``ModelOutput``
            (``return_dict_in_generate=True``), for scores and the like.
    """

    sequences: Tensor | None = None
    pred_masks: list[Tensor] | None = None
    target_positions: list[Tensor] | None = None
    generation: ModelOutput | None = None


HEADLESS_ONLY_FIELDS = frozenset({"last_hidden_state", "decoder_features"})
"""Fields of ``RegionModelOutputWithPast`` that the LM head's output replaces or does not carry."""


def _holds_cached_tokens(kwargs: dict[str, Any]) -> bool:
    """Whether a KV cache among the language-model arguments already holds tokens.

    Found by type, not by name: transformers renames the argument (``past_key_values`` became
    ``cache``) and the model only needs to know whether this step continues a sequence.
    """
    return any(isinstance(v, Cache) and v.get_seq_length() > 0 for v in kwargs.values())


class RegionPreTrainedModel(PerceptionLMPreTrainedModel):
    """Weight initialisation of the region heads (also for heads missing from a checkpoint)."""

    config: RegionConfig
    config_class = RegionConfig  # the annotation is a string under postponed evaluation

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MaskPromptEncoder):
            init.zeros_(module.weight)
        elif isinstance(module, CodebookFusion):
            init.zeros_(module.token_logits)
        elif isinstance(module, PixelDecoder):
            init.zeros_(module.scale_logits)
        elif isinstance(module, FourierPositionEncoding):
            # The decoder is built with the encoding's default scale and seed; redraw those.
            fresh = FourierPositionEncoding(2 * module.frequencies.shape[1])
            init.copy_(module.frequencies, fresh.frequencies)


class RegionModel(PerceptionLMModel, RegionPreTrainedModel):
    """PerceptionLM's headless model with mask prompts, RoI replay and decoder features.

    Args:
        config: a ``RegionConfig``.
    """

    config: RegionConfig
    config_class = RegionConfig

    def __init__(self, config: RegionConfig):
        super().__init__(config)
        timm_model = self.vision_tower.timm_model
        depth = len(timm_model.blocks)
        if max(config.decoder_vision_layers) >= depth:
            raise ValueError(
                f"decoder_vision_layers {config.decoder_vision_layers} exceed the vision tower's "
                f"{depth} blocks"
            )
        self.mask_prompt_encoder = MaskPromptEncoder(
            config.num_region_prompts, timm_model.embed_dim, timm_model.patch_embed.patch_size
        )
        self.mask_prompt_encoder.attach(self.vision_tower, timm_model.patch_embed)
        self.post_init()

    def get_image_features(
        self, pixel_values: Tensor, prompt_masks: Tensor | None = None, **kwargs: Any
    ) -> TimmWrapperModelOutput:
        """Run the vision tower (with mask prompts) over packed tiles and project to the LLM.

        Args:
            pixel_values: ``(num_tiles, 3, H, W)`` packed tiles.
            prompt_masks: ``(num_tiles, C <= num_region_prompts, H, W)`` or None.

        Returns:
            The tower output with ``pooler_output`` the projected tile tokens
            ``(num_tiles, tokens_per_tile, llm_dim)`` and ``hidden_states`` the decoder layers
            ``(num_tiles, vision_dim, h, w)`` in ``decoder_vision_layers`` order.
        """
        layers = self.config.decoder_vision_layers
        ascending = sorted(layers)  # timm returns intermediates in block order
        outputs = self.vision_tower(
            pixel_values,
            output_hidden_states=ascending,
            return_dict=True,
            **{PROMPT_MASKS_KWARG: prompt_masks},
            **kwargs,
        )
        by_layer = dict(zip(ascending, outputs.hidden_states, strict=True))
        outputs.hidden_states = [by_layer[layer] for layer in layers]
        last_hidden_state = outputs.last_hidden_state
        if self.config.vision_use_cls_token:
            last_hidden_state = last_hidden_state[:, 1:, :]
        outputs.pooler_output = self.multi_modal_projector(last_hidden_state)
        return outputs

    @can_return_tuple
    def forward(
        self,
        input_ids: Tensor | None = None,
        pixel_values: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        image_grids: Tensor | None = None,
        prompt_masks: Tensor | None = None,
        region_boxes: Sequence[Tensor] | None = None,
        **kwargs: Any,
    ) -> RegionModelOutputWithPast:
        """Embed text, image tiles and replayed regions, then run the LLM.

        Shapes and coordinate conventions are in the module docstring. Image tiles fill the
        ``image_token_id`` placeholders, replayed regions the ``region_feature_token_id`` runs;
        without ``pixel_values`` (decoding steps) every token is embedded as text. The KV cache,
        ``use_cache`` and the other language-model arguments pass through ``kwargs`` under
        whatever names the installed transformers gives them.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        vision = decoder_features = None
        if pixel_values is not None:
            if input_ids is None or image_grids is None:
                raise ValueError(
                    "pixel_values need input_ids (to find placeholders) and image_grids"
                )
            layout = TileLayout.from_grids(
                image_grids, self.config.vision_thumbnail, batch_size=input_ids.shape[0]
            )
            vision = self.get_image_features(pixel_values, prompt_masks=prompt_masks)
            image_features = vision.pooler_output
            inputs_embeds = self._place_image_features(
                input_ids, inputs_embeds, image_features, layout
            )
            inputs_embeds = self._replay_regions(
                input_ids, inputs_embeds, self._token_maps(image_features, layout), region_boxes
            )
            decoder_features = self._decoder_features(vision.hidden_states, layout)
        elif prompt_masks is not None or region_boxes is not None:
            raise ValueError("prompt_masks and region_boxes need pixel_values")

        # Count positions over attended tokens on a fresh sequence, as generate does.
        mask_2d = attention_mask is not None and attention_mask.dim() == 2
        if position_ids is None and mask_2d and not _holds_cached_tokens(kwargs):
            position_ids = position_ids_from_attention_mask(attention_mask)
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        # The language model's fields pass through by name, as upstream PerceptionLM does.
        return RegionModelOutputWithPast(
            **outputs, image_outputs=vision, decoder_features=decoder_features
        )

    def _place_image_features(
        self, input_ids: Tensor, inputs_embeds: Tensor, image_features: Tensor, layout: TileLayout
    ) -> Tensor:
        """Scatter ``(num_tiles, tokens_per_tile, D)`` tile tokens into the image placeholders."""
        image_mask = input_ids == self.config.image_token_id
        tokens_per_tile = image_features.shape[1]
        expected = [tiles * tokens_per_tile for tiles in layout.tiles_per_sample]
        found = image_mask.sum(dim=1).tolist()
        if found != expected:
            raise ValueError(
                f"image tokens per sample {found} do not match tiles x {tokens_per_tile} tokens "
                f"per tile {expected} for image_grids {list(layout.grids)}"
            )
        features = image_features.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(image_mask.unsqueeze(-1), features)

    def _token_maps(self, image_features: Tensor, layout: TileLayout) -> list[Tensor]:
        """Each sample's projected tile tokens as one merged map ``(D, th * g, tw * g)``."""
        side = math.isqrt(image_features.shape[1])
        if side * side != image_features.shape[1]:
            raise ValueError(f"tokens per tile ({image_features.shape[1]}) must be a square")
        maps = []
        for (tiles_h, tiles_w), tiles in zip(
            layout.grids, layout.grid_tiles(image_features), strict=True
        ):
            # (T, g * g, D) -> (T, D, g, g)
            grid = tiles.transpose(1, 2).unflatten(2, (side, side))
            maps.append(merge_tiles(grid, tiles_h, tiles_w))
        return maps

    def _replay_regions(
        self,
        input_ids: Tensor,
        inputs_embeds: Tensor,
        token_maps: list[Tensor],
        region_boxes: Sequence[Tensor] | None,
    ) -> Tensor:
        """Put each region's RoI-aligned ``k x k`` tokens at its placeholder run."""
        config = self.config
        if region_boxes is not None and len(region_boxes) != input_ids.shape[0]:
            raise ValueError(
                f"region_boxes needs one (R, 4) tensor per sample ({input_ids.shape[0]}), "
                f"got {len(region_boxes)}"
            )
        replayed = []
        for sample, ids in enumerate(input_ids):
            runs = placeholder_runs(
                ids, config.region_feature_token_id, config.replay_tokens, sample
            )
            boxes = None if region_boxes is None else region_boxes[sample]
            if boxes is not None:
                check_region_boxes(boxes, sample)
            num_boxes = 0 if boxes is None else boxes.shape[0]
            if runs.shape[0] != num_boxes:
                raise ValueError(
                    f"sample {sample} has {runs.shape[0]} region placeholder runs "
                    f"({runs.numel()} tokens) but {num_boxes} region boxes"
                )
            if num_boxes:
                regions = replay_regions(
                    token_maps[sample], boxes, config.replay_grid, config.replay_sampling_ratio
                )
                replayed.append(regions.flatten(0, 1))
        if not replayed:
            return inputs_embeds
        region_mask = (input_ids == config.region_feature_token_id).unsqueeze(-1)
        features = torch.cat(replayed).to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(region_mask, features)

    def _decoder_features(self, layer_tiles: list[Tensor], layout: TileLayout) -> list[Tensor]:
        """Merge each layer's tiles per sample and area-pool to ``decoder_grid`` squared."""
        size = (self.config.decoder_grid, self.config.decoder_grid)
        features = []
        for tiles in layer_tiles:
            maps = [
                F.adaptive_avg_pool2d(merge_tiles(part, h, w), size)
                for (h, w), part in zip(layout.grids, layout.grid_tiles(tiles), strict=True)
            ]
            features.append(torch.stack(maps))
        return features


class RegionForConditionalGeneration(PerceptionLMForConditionalGeneration, RegionPreTrainedModel):
    """The region model with its LM head, codebook fusion and pixel decoder.

    ``attn_implementation="auto"`` (in ``from_pretrained`` or the config) picks flash-attention 2
    for the LLM when ``flash_attn`` imports, CUDA is present and the dtype is half precision,
    else sdpa (``attention.resolve_attn_implementation``).

    Args:
        config: a ``RegionConfig``.
    """

    config: RegionConfig
    config_class = RegionConfig

    def __init__(self, config: RegionConfig):
        # PerceptionLMForConditionalGeneration.__init__ would build a plain PerceptionLMModel:
        # start from the PreTrainedModel initialiser instead and build the region model.
        super(PerceptionLMForConditionalGeneration, self).__init__(config)
        self.model = RegionModel(config)
        text_config = config.text_config
        self.lm_head = nn.Linear(text_config.hidden_size, text_config.vocab_size, bias=False)
        self.codebook_fusion = CodebookFusion(
            config.num_scales, config.tokens_per_scale, text_config.hidden_size, config.decoder_dim
        )
        self.pixel_decoder = PixelDecoder(
            config.num_scales,
            config.decoder_dim,
            self.model.vision_tower.timm_model.embed_dim,
            depth=config.decoder_depth,
            num_heads=config.decoder_heads,
            mlp_dim=config.decoder_mlp_dim,
            mask_dim=config.decoder_mask_dim,
        )
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> RegionForConditionalGeneration:
        """``PreTrainedModel.from_pretrained`` that also accepts ``attn_implementation="auto"``."""
        if kwargs.get("attn_implementation") == AUTO_ATTENTION:
            kwargs["attn_implementation"] = region_attn_implementation(
                AUTO_ATTENTION, kwargs.get("dtype")
            )
        return super().from_pretrained(*args, **kwargs)

    @can_return_tuple
    def forward(
        self,
        input_ids: Tensor | None = None,
        pixel_values: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        logits_to_keep: int | Tensor = 0,
        image_grids: Tensor | None = None,
        prompt_masks: Tensor | None = None,
        region_boxes: Sequence[Tensor] | None = None,
        target_masks: Sequence[Tensor] | None = None,
        mask_sizes: Sequence[tuple[int, int]] | None = None,
        decode_masks: bool = True,
        **kwargs: Any,
    ) -> RegionCausalLMOutputWithPast:
        """Logits, masks for every complete codebook group, and the training loss.

        Inputs are described in the module docstring; additionally ``mask_sizes`` (B ``(h, w)``)
        sets the output size of masks when no ``target_masks`` are given, and
        ``decode_masks=False`` skips the mask heads (``generate`` uses it while decoding).

        The loss, when ``labels`` or ``target_masks`` are given, is ``combine_losses`` over: text
        cross-entropy and the ``<|reject|>`` vs codebook slot decision (with ``labels``); and
        BCE, Dice and target refinement (answer turns of ``labels`` as groups, else one group per
        sample) over all target masks (with ``target_masks``), each averaged over all masks of
        the batch.
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            image_grids=image_grids,
            prompt_masks=prompt_masks,
            region_boxes=region_boxes,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        logits = self.lm_head(slice_logits_to_keep(hidden_states, logits_to_keep))

        pred_masks = groups = None
        can_decode = outputs.decoder_features is not None and input_ids is not None
        if decode_masks and can_decode:
            valid = (
                attention_mask.bool()
                if attention_mask is not None
                else torch.ones_like(input_ids, dtype=torch.bool)
            )
            groups = find_codebook_groups(
                input_ids,
                self.config.codebook_token_ids,
                valid,
                strict=labels is not None or target_masks is not None,
            )
            sizes = self._mask_sizes(groups, target_masks, mask_sizes)
            pred_masks = self.decode_target_masks(
                hidden_states, outputs.decoder_features, groups, sizes
            )
        elif target_masks is not None:
            raise ValueError("target_masks need input_ids, pixel_values and decode_masks=True")

        loss = loss_parts = None
        if labels is not None or target_masks is not None:
            loss_parts = {}
            if labels is not None:
                loss_parts.update(self._text_loss_parts(logits, labels, **kwargs))
            if target_masks is not None:
                loss_parts.update(self._mask_loss_parts(pred_masks, target_masks, groups, labels))
            loss = combine_losses(loss_parts, self.config.region_loss_weights())

        passed = {k: v for k, v in outputs.items() if k not in HEADLESS_ONLY_FIELDS}
        return RegionCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **passed,
            pred_masks=pred_masks,
            target_positions=None if groups is None else groups.starts_per_sample(),
            loss_parts=loss_parts,
        )

    def decode_target_masks(
        self,
        hidden_states: Tensor,
        decoder_features: list[Tensor],
        groups: CodebookGroups,
        sizes: Sequence[tuple[int, int] | None],
    ) -> list[Tensor]:
        """Masks of the codebook groups: fuse their states, decode, resize per sample.

        Args:
            hidden_states: ``(B, L, llm_dim)`` last LLM hidden states.
            decoder_features: S tensors ``(B, vision_dim, G, G)``.
            groups: the codebook groups to decode.
            sizes: per sample the ``(h, w)`` to resize to, or None for the decoder's resolution.

        Returns:
            B tensors ``(N_b, h, w)`` of mask logits.
        """
        positions = groups.positions(self.config.codebook_size)
        states = hidden_states[groups.sample.unsqueeze(1), positions]  # (N, S*T, llm_dim)
        codes = self.codebook_fusion(states)
        features = [scale[groups.sample] for scale in decoder_features]
        masks = self.pixel_decoder(codes, features).masks
        return [
            part if size is None else upsample_masks(part, size)
            for part, size in zip(torch.split(masks, groups.counts), sizes, strict=True)
        ]

    @staticmethod
    def _mask_sizes(
        groups: CodebookGroups,
        target_masks: Sequence[Tensor] | None,
        mask_sizes: Sequence[tuple[int, int]] | None,
    ) -> list[tuple[int, int] | None]:
        """Per-sample output size of the masks; checks target counts against the groups."""
        batch = len(groups.counts)
        if target_masks is not None:
            if len(target_masks) != batch:
                raise ValueError(
                    f"target_masks needs one (N, H, W) tensor per sample ({batch}), "
                    f"got {len(target_masks)}"
                )
            wanted = [int(masks.shape[0]) for masks in target_masks]
            if wanted != groups.counts:
                raise ValueError(
                    f"target masks per sample {wanted} do not match codebook groups per sample "
                    f"{groups.counts}"
                )
            return [tuple(masks.shape[-2:]) for masks in target_masks]
        if mask_sizes is not None:
            if len(mask_sizes) != batch:
                raise ValueError(
                    f"mask_sizes needs one (h, w) per sample ({batch}), got {len(mask_sizes)}"
                )
            return [tuple(size) for size in mask_sizes]
        return [None] * batch

    def _text_loss_parts(self, logits: Tensor, labels: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        """Next-token cross-entropy and the segment-vs-reject slot decision."""
        text = self.loss_function(
            logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
        )
        # Position j predicts token j + 1: align the logits with the labels they predict.
        slot = slot_decision_loss(
            logits[:, :-1],
            labels[:, 1:].to(logits.device),
            seg_token_id=self.config.codebook_token_ids[0],
            rej_token_id=self.config.reject_token_id,
        )
        return {"text": text, "slot": slot}

    def _mask_loss_parts(
        self,
        pred_masks: list[Tensor],
        target_masks: Sequence[Tensor],
        groups: CodebookGroups,
        labels: Tensor | None,
    ) -> dict[str, Tensor]:
        """BCE, Dice and target refinement, each a mean over all masks of the batch.

        Samples keep their own mask resolution, so each is scored alone and weighted by its
        share of the batch's masks. Refinement groups are answer turns when ``labels`` exist.
        """
        total = max(sum(groups.counts), 1)
        turns = None if labels is None else answer_turn_ids(labels)
        parts = {"bce": [], "dice": [], "refinement": []}
        for sample, (pred, target, starts) in enumerate(
            zip(pred_masks, target_masks, groups.starts_per_sample(), strict=True)
        ):
            target = target.to(pred.device)
            share = pred.shape[0] / total
            turn = (
                torch.zeros_like(starts)
                if turns is None
                else turns[sample].to(starts.device)[starts]
            )
            parts["bce"].append(share * mask_bce_loss(pred, target))
            parts["dice"].append(share * mask_dice_loss(pred, target))
            parts["refinement"].append(
                share
                * target_refinement_loss(
                    pred, target, turn, overlap_weight=self.config.refinement_overlap_weight
                )
            )
        return {name: torch.stack(values).sum() for name, values in parts.items()}

    def prepare_inputs_for_generation(
        self,
        *args: Any,
        prompt_masks: Tensor | None = None,
        region_boxes: Sequence[Tensor] | None = None,
        is_first_iteration: bool | None = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Pass image-side region inputs only on the prefill step (the KV cache holds them after).

        transformers already drops ``pixel_values`` and ``image_grids`` outside prefill.
        """
        model_inputs = super().prepare_inputs_for_generation(
            *args, is_first_iteration=is_first_iteration, **kwargs
        )
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["prompt_masks"] = prompt_masks
            model_inputs["region_boxes"] = region_boxes
        return model_inputs

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        image_grids: Tensor | None = None,
        prompt_masks: Tensor | None = None,
        region_boxes: Sequence[Tensor] | None = None,
        mask_sizes: Sequence[tuple[int, int]] | None = None,
        **kwargs: Any,
    ) -> RegionGenerateOutput:
        """Generate text (regions replayed on the prefill step, KV cache on), then decode masks.

        After generation one forward pass re-reads prompt plus generated tokens and decodes one
        mask per complete codebook group *in the generated part*; ``<|reject|>`` produces none.
        This costs one extra prefill and gives every codebook token's own hidden state,
        including a group's last token, which the generation loop never feeds back in when it
        ends the answer.

        Beam search and ``num_return_sequences > 1`` are refused: they would replicate batch
        rows, which packed tiles and per-sample box lists cannot follow.

        Args:
            input_ids, attention_mask, pixel_values, image_grids, prompt_masks, region_boxes:
                as in ``forward``.
            mask_sizes: B ``(h, w)`` to resize masks to; None keeps the decoder's resolution.
            **kwargs: passed to ``GenerationMixin.generate``.
        """
        self._refuse_expansion(kwargs)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        generated = super().generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            image_grids=image_grids,
            prompt_masks=prompt_masks,
            region_boxes=region_boxes,
            decode_masks=False,
            **kwargs,
        )
        raw = None if isinstance(generated, Tensor) else generated
        sequences = generated if raw is None else raw.sequences
        if pixel_values is None:
            return RegionGenerateOutput(sequences=sequences, generation=raw)

        # Rows that finished early are padded after their EOS; causal attention keeps those pads
        # from touching any earlier position, and a pad is never a codebook token.
        prompt_length = input_ids.shape[1]
        generated_mask = torch.ones_like(sequences[:, prompt_length:])
        full_mask = torch.cat([attention_mask.to(sequences.device), generated_mask], dim=1)
        outputs = self.model(
            input_ids=sequences,
            pixel_values=pixel_values,
            attention_mask=full_mask,
            image_grids=image_grids,
            prompt_masks=prompt_masks,
            region_boxes=region_boxes,
            use_cache=False,
        )
        valid = full_mask.bool()
        valid[:, :prompt_length] = False
        groups = find_codebook_groups(
            sequences, self.config.codebook_token_ids, valid, strict=False
        )
        sizes = self._mask_sizes(groups, None, mask_sizes)
        masks = self.decode_target_masks(
            outputs.last_hidden_state, outputs.decoder_features, groups, sizes
        )
        return RegionGenerateOutput(
            sequences=sequences,
            pred_masks=masks,
            target_positions=groups.starts_per_sample(),
            generation=raw,
        )

    def _refuse_expansion(self, kwargs: dict[str, Any]) -> None:
        config = kwargs.get("generation_config") or self.generation_config
        beams = kwargs.get("num_beams", config.num_beams) or 1
        returns = kwargs.get("num_return_sequences", config.num_return_sequences) or 1
        if beams * returns > 1:
            raise ValueError(
                f"generate supports one sequence per sample (num_beams={beams}, "
                f"num_return_sequences={returns}): packed tiles and region boxes cannot be "
                "expanded per beam"
            )
