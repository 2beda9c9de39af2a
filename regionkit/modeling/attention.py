"""Choosing the LLM's attention kernel: ``attn_implementation="auto"``.

flash-attention 2 only helps (and only runs) on CUDA in half precision, and the ``flash_attn``
wheel cannot even be built without a GPU, so "auto" picks it only when all three hold and falls
back to PyTorch's ``sdpa`` otherwise. The vision tower is timm's, which dispatches to
``F.scaled_dot_product_attention`` on its own and rejects transformers' flash setting, so it
always gets ``sdpa``.
"""

from __future__ import annotations

import importlib

import torch

__all__ = [
    "AUTO_ATTENTION",
    "flash_attn_importable",
    "region_attn_implementation",
    "resolve_attn_implementation",
]

AUTO_ATTENTION = "auto"
FLASH_ATTENTION = "flash_attention_2"
SDPA_ATTENTION = "sdpa"
FLASH_DTYPES = (torch.bfloat16, torch.float16)


def flash_attn_importable() -> bool:
    """Whether the ``flash_attn`` package imports (it exists only where it could be built)."""
    try:
        importlib.import_module("flash_attn")
    except ImportError:
        return False
    return True


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A ``torch.dtype`` from a dtype or its name (``"bfloat16"``); None for None or ``"auto"``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == AUTO_ATTENTION:
        return None
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    return resolved


def resolve_attn_implementation(
    requested: str | None, dtype: torch.dtype | str | None
) -> str | None:
    """Turn ``"auto"`` into ``"flash_attention_2"`` or ``"sdpa"``; pass anything else through.

    Args:
        requested: the attention implementation asked for; only ``"auto"`` is rewritten.
        dtype: the dtype the model will run in (a ``torch.dtype`` or its name); None or
            ``"auto"`` counts as not half precision.

    Returns:
        ``"flash_attention_2"`` when ``flash_attn`` imports, CUDA is available and ``dtype`` is
        bfloat16 or float16; else ``"sdpa"``. Other requests are returned unchanged.
    """
    if requested != AUTO_ATTENTION:
        return requested
    use_flash = (
        _as_dtype(dtype) in FLASH_DTYPES and torch.cuda.is_available() and flash_attn_importable()
    )
    return FLASH_ATTENTION if use_flash else SDPA_ATTENTION


def region_attn_implementation(
    requested: str | dict | None, dtype: torch.dtype | str | None
) -> str | dict | None:
    """The per-sub-model attention setting for a region model; resolves ``"auto"``.

    Returns ``requested`` unchanged unless it is ``"auto"``; then a dict that gives the top model
    and the LLM (``text_config``) the resolved kernel and the timm vision tower ``"sdpa"``.
    """
    if requested != AUTO_ATTENTION:
        return requested
    resolved = resolve_attn_implementation(requested, dtype)
    return {"": resolved, "text_config": resolved, "vision_config": SDPA_ATTENTION}
