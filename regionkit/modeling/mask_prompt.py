"""Mask prompt encoder: region masks as an additive patch embedding of the vision tower.

One input channel per prompt slot, so each prompt keeps its identity (GAR's encoder sees one
binary "some region" mask, and every prompt looks the same). A patch-aligned convolution
(kernel = stride = the tower's patch size) maps the ``(N, P, H, W)`` prompt map to the tower's
patch grid. It starts at zero, so a pretrained tower is unchanged until training moves it.

How the embedding reaches timm. transformers 5 passes extra keyword arguments of
``vision_tower(...)`` down to timm's ``forward_features`` / ``forward_intermediates``, but timm's
Eva (the PE tower) accepts no additive embedding there, so an extra keyword would raise. Editing
a copy of ``forward_features`` is the vendoring we avoid, and wrapping ``patch_embed`` in a new
module renames its state-dict keys (breaking PerceptionLM checkpoints) and must mirror the
attributes Eva reads from it (``grid_size``, ``dynamic_feat_size``). So ``attach`` uses PyTorch's
own extension points and leaves library code and keys untouched:

1. a keyword pre-hook on the vision tower takes ``region_prompt_masks=`` out of the call's kwargs
   before transformers sees them and holds it for the duration of the call;
2. a forward hook on ``patch_embed`` adds ``encoder(masks)`` to the patch embeddings, i.e. after
   patchifying and before the class token and position embeddings (GAR's point of injection);
3. a forward hook on the tower, run even when the call raises, drops the held masks.

Every tower call sets the held value (to None when the keyword is absent), so nothing from one
call can leak into the next.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PROMPT_MASKS_KWARG", "MaskPromptEncoder"]

PROMPT_MASKS_KWARG = "region_prompt_masks"


class MaskPromptEncoder(nn.Module):
    """Zero-initialised patch-aligned convolution over the per-prompt mask map.

    Args:
        num_prompts: P, prompt slots (input channels); channel p is prompt p's mask.
        embed_dim: the vision tower's patch-embedding width.
        patch_size: the tower's patch size in pixels (kernel and stride), an int or (h, w).

    The kernel is this module's own ``weight`` ``(embed_dim, P, patch_h, patch_w)``, not an
    ``nn.Conv2d`` child, so model-wide initialisers (transformers' ``_init_weights``) see it here
    and keep it at zero rather than drawing it like any other convolution.
    """

    def __init__(self, num_prompts: int, embed_dim: int, patch_size: int | tuple[int, int]):
        super().__init__()
        patch = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        self.num_prompts = num_prompts
        self.patch_size = patch
        self.weight = nn.Parameter(torch.zeros(embed_dim, num_prompts, *patch))
        self._held_masks: Tensor | None = None

    def forward(self, prompt_masks: Tensor) -> Tensor:
        """Embed ``(N, C, H, W)`` masks in [0, 1] to ``(N, embed_dim, H / patch, W / patch)``.

        ``C <= P``: the first C prompt slots. A batch that uses fewer slots than the model has
        need not carry the empty ones (at GAR-1B's 16 slots and 17 tiles of 448 pixels, each
        empty slot is 13 MB of zeros per sample); they would add nothing to the embedding.
        """
        if prompt_masks.dim() != 4 or prompt_masks.shape[1] > self.num_prompts:
            raise ValueError(
                f"prompt_masks must be (num_tiles, at most num_region_prompts={self.num_prompts}"
                f", H, W), got {tuple(prompt_masks.shape)}"
            )
        masks = prompt_masks.to(device=self.weight.device, dtype=self.weight.dtype)
        if masks.shape[1] == 0:
            # no region named: zeros, tied to the weight so that a data-parallel rank whose
            # batch names none still reduces its (zero) gradient like the others
            n, _, height, width = masks.shape
            grid = (height // self.patch_size[0], width // self.patch_size[1])
            return masks.new_zeros(n, self.weight.shape[0], *grid) + self.weight.sum() * 0
        return F.conv2d(masks, self.weight[:, : masks.shape[1]], stride=self.patch_size)

    def attach(self, vision_tower: nn.Module, patch_embed: nn.Module) -> None:
        """Register the three hooks (see the module docstring) on a tower and its patch embed."""
        vision_tower.register_forward_pre_hook(self._hold_masks, with_kwargs=True)
        vision_tower.register_forward_hook(self._drop_masks, always_call=True)
        patch_embed.register_forward_hook(self._add_embedding)

    def _hold_masks(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs = dict(kwargs)
        self._held_masks = kwargs.pop(PROMPT_MASKS_KWARG, None)
        return args, kwargs

    def _drop_masks(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._held_masks = None

    def _add_embedding(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
        if self._held_masks is None:
            return output  # no prompt masks given (a text-only call)
        embeds = self(self._held_masks)  # (N, D, h, w); zeros when the batch names no region
        # Patch embeddings are (N, h * w, D) or (N, h, w, D); both are row-major over (h, w).
        expected = (output.shape[0], output.shape[-1], output[0, ..., 0].numel())
        if (embeds.shape[0], embeds.shape[1], embeds[0, 0].numel()) != expected:
            raise ValueError(
                f"prompt masks embed to {tuple(embeds.shape)} but the patch embeddings are "
                f"{tuple(output.shape)}; prompt masks must be tiled exactly like pixel_values"
            )
        return output + embeds.permute(0, 2, 3, 1).reshape(output.shape).to(output.dtype)

    def extra_repr(self) -> str:
        embed_dim, num_prompts = self.weight.shape[:2]
        return f"num_prompts={num_prompts}, embed_dim={embed_dim}, patch_size={self.patch_size}"
