"""Synthetic region batches for the tiny region model: sequences laid out per the token contract."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from regionkit.modeling import RegionConfig, RegionForConditionalGeneration, tiny_region_config
from regionkit.modeling.token_layout import IGNORE_INDEX

TILE_PIXELS = 56
TOKENS_PER_TILE = 4
TEXT_TOKENS = range(3, 64)  # ordinary text ids of the tiny vocabulary
BOS, EOS, PAD = 1, 2, 0
MASK_SIZE = (20, 24)


@dataclass
class SampleSpec:
    """One sample: its tile grid, region boxes (prompt slot = order) and answer slots.

    ``slots`` lists the answer's target slots in order: "seg" (a codebook group) or "rej".
    ``turns`` splits the slots into answer turns (sizes), one user/assistant exchange each.
    """

    grid: tuple[int, int]
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    slots: list[str] = field(default_factory=list)
    turns: list[int] | None = None


def tiny_model(seed: int = 0, **overrides) -> RegionForConditionalGeneration:
    """A freshly initialised tiny region model in eval mode (no dropout anyway)."""
    torch.manual_seed(seed)
    return RegionForConditionalGeneration(tiny_region_config(**overrides)).eval()


def _text(generator: torch.Generator, count: int) -> list[int]:
    picks = torch.randint(len(TEXT_TOKENS), (count,), generator=generator)
    return [TEXT_TOKENS[i] for i in picks.tolist()]


def build_sample(config: RegionConfig, spec: SampleSpec, seed: int) -> dict:
    """Token ids, labels, tiles, prompt masks, boxes and target masks of one sample."""
    generator = torch.Generator().manual_seed(seed)
    tiles = (1 if config.vision_thumbnail else 0) + spec.grid[0] * spec.grid[1]
    ids = [BOS] + [config.image_token_id] * (tiles * TOKENS_PER_TILE) + _text(generator, 2)
    for slot, _ in enumerate(spec.boxes):
        ids += [config.region_prompt_token_ids[slot]]
        ids += [config.region_feature_token_id] * config.replay_tokens
        ids += _text(generator, 1)
    labels = [IGNORE_INDEX] * len(ids)
    turns = spec.turns or [len(spec.slots)]
    slots = iter(spec.slots)
    for turn_size in turns:
        question = _text(generator, 2)
        ids += question
        labels += [IGNORE_INDEX] * len(question)
        answer = _text(generator, 1)
        for _ in range(turn_size):
            kind = next(slots)
            answer += config.codebook_token_ids if kind == "seg" else [config.reject_token_id]
            answer += _text(generator, 1)
        answer += [EOS]
        ids += answer
        labels += answer
    height, width = MASK_SIZE
    seg_count = spec.slots.count("seg")
    prompt_masks = torch.zeros(tiles, config.num_region_prompts, TILE_PIXELS, TILE_PIXELS)
    for slot, (x1, y1, x2, y2) in enumerate(spec.boxes):
        # Thumbnail-style prompt: the box painted on every tile is enough for the model tests.
        prompt_masks[
            :,
            slot,
            int(y1 * TILE_PIXELS) : int(y2 * TILE_PIXELS) + 1,
            int(x1 * TILE_PIXELS) : int(x2 * TILE_PIXELS) + 1,
        ] = 1
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "pixel_values": torch.randn(tiles, 3, TILE_PIXELS, TILE_PIXELS, generator=generator),
        "prompt_masks": prompt_masks,
        "image_grid": torch.tensor(spec.grid),
        "region_boxes": torch.tensor(spec.boxes, dtype=torch.float32).reshape(-1, 4),
        "target_masks": (torch.rand(seg_count, height, width, generator=generator) > 0.5).float(),
    }


def collate(samples: list[dict], padding_side: str = "left") -> dict:
    """Pad ids/labels (``PAD``/-100, mask 0) and pack tiles; lists stay per sample."""
    length = max(s["input_ids"].shape[0] for s in samples)
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for sample in samples:
        pad = length - sample["input_ids"].shape[0]
        for key, fill in (("input_ids", PAD), ("labels", IGNORE_INDEX)):
            padding = torch.full((pad,), fill, dtype=torch.long)
            parts = [padding, sample[key]] if padding_side == "left" else [sample[key], padding]
            batch[key].append(torch.cat(parts))
        ones = torch.ones(sample["input_ids"].shape[0], dtype=torch.long)
        zeros = torch.zeros(pad, dtype=torch.long)
        batch["attention_mask"].append(
            torch.cat([zeros, ones] if padding_side == "left" else [ones, zeros])
        )
    out: dict[str, Tensor | list[Tensor]] = {k: torch.stack(v) for k, v in batch.items()}
    out["pixel_values"] = torch.cat([s["pixel_values"] for s in samples])
    out["prompt_masks"] = torch.cat([s["prompt_masks"] for s in samples])
    out["image_grids"] = torch.stack([s["image_grid"] for s in samples])
    out["region_boxes"] = [s["region_boxes"] for s in samples]
    out["target_masks"] = [s["target_masks"] for s in samples]
    return out


def to_device(batch: dict, device: torch.device, dtype: torch.dtype) -> dict:
    """Move a collated batch; image tensors and masks take ``dtype``, ids stay integer."""
    floating = {"pixel_values", "prompt_masks", "target_masks"}

    def move(key: str, value: Tensor) -> Tensor:
        return value.to(device, dtype) if key in floating else value.to(device)

    return {
        key: [move(key, v) for v in value] if isinstance(value, list) else move(key, value)
        for key, value in batch.items()
    }
