"""Codebook fusion: turn each target's codebook-token hidden states into one code per scale.

A target's answer slot is ``num_scales * tokens_per_scale`` codebook tokens (PixelLM's
``[SEG0] ... [SEG5]`` for 2 scales x 3 tokens). The LLM's last hidden states at those tokens are
fused per scale with learned convex weights and projected to the pixel decoder's width.

PixelLM's release held its fusion weights in a plain Python list, so they were never registered:
never optimized, never saved, a fixed mean in practice. Here they are an ``nn.Parameter`` in the
module's ``state_dict`` and train with everything else.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from regionkit.modeling.checks import require_positive

__all__ = ["CodebookFusion"]


class CodebookFusion(nn.Module):
    """Per-scale learned weighted sum of codebook-token states, then a projection MLP.

    Args:
        num_scales: number of decoder scales S (one code per scale per target).
        tokens_per_scale: codebook tokens T that describe one scale of one target.
        llm_dim: width of the LLM hidden states.
        decoder_dim: width of the pixel decoder the codes feed.

    The fusion weights are ``softmax(token_logits, dim=-1)`` with ``token_logits`` a registered
    parameter of shape ``(S, T)``, initialised to zeros so every scale starts as a uniform mean.
    The softmax keeps each scale's weights a convex combination throughout training.
    """

    def __init__(self, num_scales: int, tokens_per_scale: int, llm_dim: int, decoder_dim: int):
        super().__init__()
        sizes = {
            "num_scales": num_scales,
            "tokens_per_scale": tokens_per_scale,
            "llm_dim": llm_dim,
            "decoder_dim": decoder_dim,
        }
        require_positive("CodebookFusion", sizes)
        self.num_scales = num_scales
        self.tokens_per_scale = tokens_per_scale
        self.llm_dim = llm_dim
        self.decoder_dim = decoder_dim
        self.token_logits = nn.Parameter(torch.zeros(num_scales, tokens_per_scale))
        self.proj = nn.Sequential(
            nn.Linear(llm_dim, llm_dim),
            nn.ReLU(),
            nn.Linear(llm_dim, decoder_dim),
        )

    @property
    def num_tokens(self) -> int:
        """Codebook tokens per target, ``num_scales * tokens_per_scale``."""
        return self.num_scales * self.tokens_per_scale

    def token_weights(self) -> Tensor:
        """The convex fusion weights, ``(num_scales, tokens_per_scale)``, rows summing to 1."""
        logits = self.token_logits
        return logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=-1)

    def forward(self, code_states: Tensor) -> Tensor:
        """Fuse and project codebook states.

        Args:
            code_states: ``(N_targets, num_scales * tokens_per_scale, llm_dim)``, each target's
                codebook-token hidden states in sequence order, scale-major (tokens ``0..T-1``
                are scale 0, ``T..2T-1`` scale 1, ...).

        Returns:
            ``(N_targets, num_scales, decoder_dim)``: one code per target and scale.
        """
        expected = (self.num_tokens, self.llm_dim)
        if code_states.dim() != 3 or tuple(code_states.shape[1:]) != expected:
            raise ValueError(
                "code_states must be (N_targets, num_scales * tokens_per_scale, llm_dim) = "
                f"(N, {expected[0]}, {expected[1]}), got {tuple(code_states.shape)}"
            )
        states = code_states.reshape(-1, self.num_scales, self.tokens_per_scale, self.llm_dim)
        weights = self.token_weights().to(states.dtype)
        fused = torch.einsum("nstd,st->nsd", states, weights)
        return self.proj(fused)

    def extra_repr(self) -> str:
        return (
            f"num_scales={self.num_scales}, tokens_per_scale={self.tokens_per_scale}, "
            f"llm_dim={self.llm_dim}, decoder_dim={self.decoder_dim}"
        )
