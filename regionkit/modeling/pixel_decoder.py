"""A light coarse-to-fine pixel decoder driven by codebook codes (PixelLM's idea, no SAM).

Each target brings one code per scale (``CodebookFusion``) and shares its image's vision
features: ``num_scales`` layers of the vision tower over one merged tile map, all ``h x w``.
Scale ``s`` lifts its layer to ``2**s`` times the base grid, lets the codes and the map attend to
each other in a small two-way transformer, upsamples the map 2x and reads a mask off it with a
hypernetwork kernel made from the scale's code token. Every scale after the first starts from a map
modulated by the previous scale's prediction, so the finer scales refine rather than restart.

Resolutions for an ``h x w`` feature grid and S scales::

    scale s:  source map h*2**s  ->  logits h*2**(s+1)        final masks: h*2**S

e.g. 16x16 features and 2 scales give 32x32 then 64x64 logits. ``upsample_masks`` maps logits to
any image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regionkit.modeling.checks import require_positive

__all__ = [
    "FourierPositionEncoding",
    "LayerNorm2d",
    "PixelDecoder",
    "PixelDecoderOutput",
    "TwoWayTransformer",
    "upsample_masks",
]


@dataclass
class PixelDecoderOutput:
    """What ``PixelDecoder.forward`` returns.

    Attributes:
        masks: ``(N, h * 2**S, w * 2**S)`` final mask logits, the learned convex fusion of the
            per-scale logits resized to the finest resolution.
        per_scale: S tensors, ``per_scale[s]`` is ``(N, h * 2**(s+1), w * 2**(s+1))`` logits of
            scale ``s`` (coarse to fine), for deep supervision or inspection.
    """

    masks: Tensor
    per_scale: list[Tensor]


def upsample_masks(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize mask logits bilinearly (``align_corners=False``) to ``size = (height, width)``.

    Resizing logits rather than probabilities keeps the 0-logit decision boundary smooth.

    Args:
        logits: ``(..., H, W)``, any leading dims (usually ``(N, H, W)``; ``N`` may be 0).
        size: target ``(height, width)`` in pixels.

    Returns:
        ``(..., height, width)`` logits, same dtype and device as ``logits``.
    """
    if logits.dim() < 2:
        raise ValueError(f"logits must be (..., H, W), got shape {tuple(logits.shape)}")
    lead = logits.shape[:-2]
    height, width = (int(v) for v in size)
    flat = logits.reshape(math.prod(lead), 1, *logits.shape[-2:])
    resized = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*lead, height, width)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``(N, C, H, W)`` maps (per pixel, across channels).

    Args:
        num_channels: C.
        eps: added to the variance.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``."""
        normed = F.layer_norm(
            x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps
        )
        return normed.permute(0, 3, 1, 2)


class FourierPositionEncoding(nn.Module):
    """2-D random Fourier features of normalised pixel-centre coordinates.

    Coordinates are mapped to ``[-1, 1]`` before projection, so one frequency matrix encodes every
    scale's grid consistently. The frequencies are drawn from a private generator seeded with
    ``seed`` (independent of the global RNG, identical in every instance) and kept as a persistent
    buffer, so a saved ``state_dict`` restores them exactly.

    Args:
        dim: output channels, even (half sine, half cosine).
        scale: standard deviation of the Gaussian frequencies; larger means finer spatial detail.
        seed: seed of the frequency draw.
    """

    def __init__(self, dim: int, scale: float = 1.0, seed: int = 0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"FourierPositionEncoding dim must be even and >= 2, got {dim}")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", scale * torch.randn(2, dim // 2, generator=generator))

    def forward(self, height: int, width: int, dtype: torch.dtype) -> Tensor:
        """Encoding of a ``height x width`` grid: ``(height * width, dim)``, row-major pixels."""
        device = self.frequencies.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        coords = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2) * 2 - 1
        phase = 2 * math.pi * coords @ self.frequencies.float()
        return torch.cat([phase.sin(), phase.cos()], dim=-1).to(dtype)


class Attention(nn.Module):
    """Multi-head attention with separate query/key/value inputs (scaled dot-product).

    Args:
        dim: model width; must be divisible by ``num_heads``.
        num_heads: attention heads.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        # (N, L, D) -> (N, heads, L, D / heads)
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """``query (N, Lq, D)``, ``key`` and ``value (N, Lk, D)`` -> ``(N, Lq, D)``."""
        out = F.scaled_dot_product_attention(
            self._split(self.q_proj(query)),
            self._split(self.k_proj(key)),
            self._split(self.v_proj(value)),
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))


class TwoWayBlock(nn.Module):
    """Tokens attend to themselves and to the map, then the map attends back to the tokens.

    Every sub-layer is residual and followed by a LayerNorm. Positional information is re-added
    to the attention inputs at every sub-layer: the initial tokens for the token side, the
    Fourier encoding for the map side.

    Args:
        dim: model width.
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLP.
        token_pe_in_self_attn: add the token positional term in self-attention; off in the first
            block, whose input tokens are that term already.
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, token_pe_in_self_attn: bool):
        super().__init__()
        self.token_pe_in_self_attn = token_pe_in_self_attn
        self.self_attn = Attention(dim, num_heads)
        self.norm_self = nn.LayerNorm(dim)
        self.token_to_map = Attention(dim, num_heads)
        self.norm_token_to_map = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, dim))
        self.norm_mlp = nn.LayerNorm(dim)
        self.map_to_token = Attention(dim, num_heads)
        self.norm_map_to_token = nn.LayerNorm(dim)

    def forward(
        self, tokens: Tensor, token_pe: Tensor, pixels: Tensor, pixel_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``tokens, token_pe (N, K, D)``; ``pixels (N, P, D)``; ``pixel_pe (1 or N, P, D)``."""
        q = tokens + token_pe if self.token_pe_in_self_attn else tokens
        tokens = self.norm_self(tokens + self.self_attn(q, q, tokens))
        q, k = tokens + token_pe, pixels + pixel_pe
        tokens = self.norm_token_to_map(tokens + self.token_to_map(q, k, pixels))
        tokens = self.norm_mlp(tokens + self.mlp(tokens))
        q = tokens + token_pe
        pixels = self.norm_map_to_token(pixels + self.map_to_token(k, q, tokens))
        return tokens, pixels


class TwoWayTransformer(nn.Module):
    """A stack of ``TwoWayBlock`` and a final token-to-map attention (SAM's decoder design).

    Args:
        dim: model width.
        depth: number of two-way blocks (>= 1).
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLPs.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            TwoWayBlock(dim, num_heads, mlp_dim, token_pe_in_self_attn=i > 0) for i in range(depth)
        )
        self.final_attn = Attention(dim, num_heads)
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor, pixels: Tensor, pixel_pe: Tensor) -> tuple[Tensor, Tensor]:
        """Args: ``tokens (N, K, D)``, ``pixels (N, P, D)``, ``pixel_pe (1 or N, P, D)``.

        Returns the updated ``(tokens (N, K, D), pixels (N, P, D))``.
        """
        queries, keys = tokens, pixels
        for block in self.blocks:
            queries, keys = block(queries, tokens, keys, pixel_pe)
        attended = self.final_attn(queries + tokens, keys + pixel_pe, keys)
        return self.final_norm(queries + attended), keys


def _upsample_2x(in_dim: int, out_dim: int) -> nn.Sequential:
    """Learned 2x upsampling: ``(N, in_dim, H, W) -> (N, out_dim, 2H, 2W)``."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_dim, out_dim, kernel_size=2, stride=2),
        LayerNorm2d(out_dim),
        nn.GELU(),
    )


class DecoderScale(nn.Module):
    """The modules of one scale: neck, lift to the scale's grid, two-way transformer, mask head.

    Args:
        level: scale index s; the source map is lifted ``2**s`` times (s learned 2x steps).
        vision_dim: channels of the vision features.
        decoder_dim: decoder width.
        mask_dim: channels of the upsampled map the hypernetwork kernel is dotted with.
        depth, num_heads, mlp_dim: the two-way transformer's shape.
    """

    def __init__(
        self,
        level: int,
        vision_dim: int,
        decoder_dim: int,
        mask_dim: int,
        depth: int,
        num_heads: int,
        mlp_dim: int,
    ):
        super().__init__()
        self.neck = nn.Sequential(
            nn.Conv2d(vision_dim, decoder_dim, kernel_size=1, bias=False),
            LayerNorm2d(decoder_dim),
            nn.Conv2d(decoder_dim, decoder_dim, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(decoder_dim),
        )
        self.lift = nn.Sequential(*(_upsample_2x(decoder_dim, decoder_dim) for _ in range(level)))
        self.transformer = TwoWayTransformer(decoder_dim, depth, num_heads, mlp_dim)
        self.upscale = _upsample_2x(decoder_dim, mask_dim)
        self.hypernet = nn.Sequential(
            nn.Linear(decoder_dim, decoder_dim), nn.ReLU(), nn.Linear(decoder_dim, mask_dim)
        )


class PixelDecoder(nn.Module):
    """Coarse-to-fine mask decoder from per-scale codes and same-size multi-layer features.

    Per scale s (coarse to fine):

    1. neck (1x1 conv to ``decoder_dim``, LayerNorm2d, 3x3 conv, LayerNorm2d) on ``features[s]``,
       then s learned 2x upsamplings, giving a source map at ``(h * 2**s, w * 2**s)``;
    2. for s > 0, ``src * (sigmoid(prev) + 1)`` with ``prev`` the logits of scale s-1, which are
       already at this resolution (PixelLM's modulation, so fine scales focus where coarse ones
       fired, without ever zeroing the map);
    3. a two-way transformer (own weights per scale) between the tokens and the flattened map
       plus a Fourier positional encoding; the tokens are all S codes of the target, each plus
       the learned level embedding of its scale, so every scale sees the whole codebook and the
       map can attend among several tokens;
    4. the map is upsampled 2x to ``mask_dim`` channels and the logits are the dot product with
       a hypernetwork MLP of output token s: ``(h * 2**(s+1), w * 2**(s+1))``.

    The final ``masks`` are a *learned* convex fusion: ``softmax(scale_logits)``-weighted sum of
    all scales' logits, each resized bilinearly to the finest grid. ``scale_logits`` is a
    registered ``(S,)`` parameter initialised to zeros, i.e. equal weights (PixelLM's fixed 0.5
    per scale, which its release never trained or saved).

    With ``num_scales=1`` the single token makes attention over tokens trivial (softmax over one
    key), so the attention query/key projections that score tokens receive no gradient.

    Args:
        num_scales: S, number of scales, codes per target and feature layers.
        decoder_dim: width of codes and of the decoder; even, divisible by ``num_heads``.
        vision_dim: channels of each feature map.
        depth: two-way blocks per scale.
        num_heads: attention heads.
        mlp_dim: hidden width of the transformer's token MLP.
        mask_dim: channels of the upsampled map and of the hypernetwork output.
        pe_scale: std of the Fourier positional frequencies.
        pe_seed: seed of the Fourier positional frequencies (stored as a buffer).
    """

    def __init__(
        self,
        num_scales: int,
        decoder_dim: int,
        vision_dim: int,
        depth: int = 2,
        num_heads: int = 4,
        mlp_dim: int = 256,
        *,
        mask_dim: int = 32,
        pe_scale: float = 1.0,
        pe_seed: int = 0,
    ):
        super().__init__()
        sizes = {
            "num_scales": num_scales,
            "decoder_dim": decoder_dim,
            "vision_dim": vision_dim,
            "depth": depth,
            "num_heads": num_heads,
            "mlp_dim": mlp_dim,
            "mask_dim": mask_dim,
        }
        require_positive("PixelDecoder", sizes)
        if decoder_dim % num_heads:
            raise ValueError(
                f"decoder_dim ({decoder_dim}) must be divisible by num_heads ({num_heads})"
            )
        self.num_scales = num_scales
        self.decoder_dim = decoder_dim
        self.vision_dim = vision_dim
        self.level_embed = nn.Embedding(num_scales, decoder_dim)
        self.pos_enc = FourierPositionEncoding(decoder_dim, scale=pe_scale, seed=pe_seed)
        self.scales = nn.ModuleList(
            DecoderScale(s, vision_dim, decoder_dim, mask_dim, depth, num_heads, mlp_dim)
            for s in range(num_scales)
        )
        self.scale_logits = nn.Parameter(torch.zeros(num_scales))

    def scale_weights(self) -> Tensor:
        """The convex per-scale fusion weights, ``(num_scales,)``, summing to 1."""
        logits = self.scale_logits
        return logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=0)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Final mask resolution for an ``height x width`` feature grid: ``x 2**num_scales``."""
        factor = 2**self.num_scales
        return height * factor, width * factor

    def forward(self, codes: Tensor, features: list[Tensor]) -> PixelDecoderOutput:
        """Decode one mask per target.

        Args:
            codes: ``(N, num_scales, decoder_dim)``, from ``CodebookFusion``.
            features: ``num_scales`` tensors ``(N, vision_dim, h, w)``, coarse to fine in semantic
                depth (``features[0]`` the deepest layer), all the same ``h x w``. Targets of
                one image share one map; pass it expanded (``expand``, no copy). The decoder's
                own maps are per target, since codes and predictions modulate them.

        Returns:
            ``PixelDecoderOutput``; ``masks`` is ``(N, h * 2**S, w * 2**S)``. ``N = 0`` gives
            empty tensors of the right shapes.
        """
        num_targets, height, width = self._check_inputs(codes, features)
        if num_targets == 0:
            return self._empty_output(codes, height, width)
        # through the embedding's own forward, not its `.weight`: sharded training (ZeRO-3)
        # gathers a module's weights only around its forward and backward
        levels = torch.arange(self.num_scales, device=codes.device)
        tokens = codes + self.level_embed(levels)
        per_scale: list[Tensor] = []
        for s, (stage, feats) in enumerate(zip(self.scales, features, strict=True)):
            src = stage.lift(stage.neck(feats))
            if per_scale:
                # Scale s-1 predicted at h * 2**s, exactly this source grid: no resize needed.
                src = src * (per_scale[-1].sigmoid().unsqueeze(1) + 1)
            grid_h, grid_w = src.shape[-2:]
            pixel_pe = self.pos_enc(grid_h, grid_w, src.dtype).unsqueeze(0)
            out_tokens, pixels = stage.transformer(tokens, src.flatten(2).transpose(1, 2), pixel_pe)
            pixel_map = pixels.transpose(1, 2).unflatten(2, (grid_h, grid_w))
            kernel = stage.hypernet(out_tokens[:, s])
            per_scale.append(torch.einsum("nc,nchw->nhw", kernel, stage.upscale(pixel_map)))
        finest = per_scale[-1].shape[-2:]
        resized = torch.stack([upsample_masks(logits, finest) for logits in per_scale], dim=1)
        weights = self.scale_weights().to(resized.dtype)
        masks = torch.einsum("nshw,s->nhw", resized, weights)
        return PixelDecoderOutput(masks=masks, per_scale=per_scale)

    def _check_inputs(self, codes: Tensor, features: list[Tensor]) -> tuple[int, int, int]:
        """Validate shapes; return ``(N, h, w)``."""
        expected = (self.num_scales, self.decoder_dim)
        if codes.dim() != 3 or tuple(codes.shape[1:]) != expected:
            raise ValueError(
                f"codes must be (N, num_scales, decoder_dim) = (N, {expected[0]}, {expected[1]}), "
                f"got {tuple(codes.shape)}"
            )
        if len(features) != self.num_scales:
            raise ValueError(
                f"expected {self.num_scales} feature maps (one per scale), got {len(features)}"
            )
        num_targets = codes.shape[0]
        first = features[0]
        if first.dim() != 4:
            raise ValueError(f"features[0] must be (N, vision_dim, h, w), got {tuple(first.shape)}")
        expected_feat = (num_targets, self.vision_dim, *first.shape[-2:])
        for s, feats in enumerate(features):
            if tuple(feats.shape) != expected_feat:
                raise ValueError(
                    f"features[{s}] must be (N, vision_dim, h, w) = {expected_feat} "
                    f"(N from codes, h x w from features[0]), got {tuple(feats.shape)}"
                )
        return num_targets, int(first.shape[-2]), int(first.shape[-1])

    def _empty_output(self, codes: Tensor, height: int, width: int) -> PixelDecoderOutput:
        """Empty logits for ``N = 0``, without running the decoder.

        The outputs carry a zero term tied to ``codes`` and every parameter, so a loss built on
        them back-propagates zero gradients into the whole decoder: a data-parallel rank with no
        targets in its batch then reduces the same parameters as the others (DDP, ZeRO).
        """
        zero = codes.sum() * 0
        for param in self.parameters():
            zero = zero + param.sum() * 0
        zero = zero.to(codes.dtype)
        per_scale = [
            codes.new_zeros(0, height * 2 ** (s + 1), width * 2 ** (s + 1)) + zero
            for s in range(self.num_scales)
        ]
        masks = codes.new_zeros(0, *self.output_size(height, width)) + zero
        return PixelDecoderOutput(masks=masks, per_scale=per_scale)

    def extra_repr(self) -> str:
        return (
            f"num_scales={self.num_scales}, decoder_dim={self.decoder_dim}, "
            f"vision_dim={self.vision_dim}"
        )
