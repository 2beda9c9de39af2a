"""Time one training step of the region model, with and without RoI replay and the pixel decoder.

    python bench/region_model_step.py                 # tiny config; CUDA + bf16 when present
    python bench/region_model_step.py --config gar-1b --batch-size 2 --steps 10   # on a GPU

A step is forward, backward and an AdamW update on a synthetic batch laid out per the region
token contract (``RegionConfig``): every sample has one image of ``--grid`` tiles (plus the
thumbnail), ``--regions`` regions in the prompt and ``--targets`` codebook groups in the answer.
Variants drop the parts being measured:

- ``full``: regions replayed and masks decoded (BCE, Dice, refinement losses);
- ``no-replay``: the same answer, but no region placeholders or boxes in the prompt;
- ``no-decoder``: regions replayed, answers without codebook groups (no mask work);
- ``plain``: transformers' own ``PerceptionLMForConditionalGeneration``, built from the config's
  PerceptionLM fields (same vision tower, projector, LLM, tiles and text tokens), with no mask
  prompts, replay, codebook or decoder and a text cross-entropy loss only: the baseline cost of
  PerceptionLM fine-tuning. It runs after the region model is freed, so its peak memory is its own.

Prints the median step time, tokens per second and, on CUDA, peak memory per variant.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn
from transformers import PerceptionLMConfig, PerceptionLMForConditionalGeneration

from regionkit.modeling import (
    RegionConfig,
    RegionForConditionalGeneration,
    gar_1b_config,
    tiny_region_config,
)
from regionkit.modeling.attention import region_attn_implementation
from regionkit.modeling.token_layout import IGNORE_INDEX

CONFIGS: dict[str, Callable[[], RegionConfig]] = {
    "tiny": tiny_region_config,
    "gar-1b": gar_1b_config,
}
REGION_VARIANTS = {  # name: (regions replayed, masks decoded)
    "full": (True, True),
    "no-replay": (False, True),
    "no-decoder": (True, False),
}
TEXT_TOKEN = 3  # any ordinary text id
TEXT_LENGTH = 32  # question and answer text tokens per sample
MASK_SIDE = 256  # target mask resolution


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grid", type=int, nargs=2, default=(2, 2), metavar=("TILES_H", "TILES_W"))
    parser.add_argument("--regions", type=int, default=2)
    parser.add_argument("--targets", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args()


def plain_config(config: RegionConfig) -> PerceptionLMConfig:
    """The PerceptionLM fields of ``config``, its region fields left out."""
    fields = {name: getattr(config, name) for name in PerceptionLMConfig.__annotations__}
    fields["vision_config"] = config.vision_config.to_dict()
    fields["text_config"] = config.text_config.to_dict()
    return PerceptionLMConfig(**fields)


def tile_geometry(model: PerceptionLMForConditionalGeneration) -> tuple[int, int]:
    """(tile pixels, LLM tokens per tile) from the built vision tower and projector pooling."""
    patch_embed = model.model.vision_tower.timm_model.patch_embed
    pixels = patch_embed.img_size[0]
    side = patch_embed.grid_size[0] // max(1, model.config.projector_pooling_ratio)
    return pixels, side * side


def tiles_per_sample(config: RegionConfig, args: argparse.Namespace) -> int:
    """The thumbnail (if the config has one) plus the ``--grid`` tiles."""
    return int(config.vision_thumbnail) + args.grid[0] * args.grid[1]


def image_prompt(model: PerceptionLMForConditionalGeneration, tiles: int) -> list[int]:
    """Every variant's prompt starts alike: the image placeholders, then the question text."""
    _, tokens_per_tile = tile_geometry(model)
    return [model.config.image_token_id] * (tiles * tokens_per_tile) + [TEXT_TOKEN] * TEXT_LENGTH


def synthetic_batch(
    model: RegionForConditionalGeneration,
    args: argparse.Namespace,
    replay: bool,
    decode: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> dict:
    """One batch of identical samples laid out per the token contract."""
    config = model.config
    pixels, _ = tile_geometry(model)
    tiles = tiles_per_sample(config, args)
    regions = args.regions if replay else 0
    prompt = image_prompt(model, tiles)
    for slot in range(regions):
        prompt += [config.region_prompt_token_ids[slot]]
        prompt += [config.region_feature_token_id] * config.replay_tokens
    answer = [TEXT_TOKEN] * TEXT_LENGTH
    targets = args.targets if decode else 0
    for _ in range(targets):
        answer += [*config.codebook_token_ids, TEXT_TOKEN]
    ids = torch.tensor(prompt + answer, device=device).repeat(args.batch_size, 1)
    labels = ids.clone()
    labels[:, : len(prompt)] = IGNORE_INDEX
    batch_tiles = args.batch_size * tiles
    prompt_masks = torch.zeros(batch_tiles, config.num_region_prompts, pixels, pixels)
    prompt_masks[:, :regions, pixels // 4 : pixels // 2, pixels // 4 : pixels // 2] = 1
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "pixel_values": torch.randn(batch_tiles, 3, pixels, pixels, device=device, dtype=dtype),
        "image_grids": torch.tensor([args.grid] * args.batch_size, device=device),
        "prompt_masks": prompt_masks.to(device, dtype),
        "region_boxes": [
            torch.tensor([[0.1, 0.2, 0.6, 0.8]] * regions, device=device).reshape(-1, 4)
            for _ in range(args.batch_size)
        ],
    }
    if decode:
        masks = torch.rand(targets, MASK_SIDE, MASK_SIDE, device=device) > 0.5
        batch["target_masks"] = [masks.to(dtype) for _ in range(args.batch_size)]
    return batch


def plain_batch(
    model: PerceptionLMForConditionalGeneration,
    tiles: int,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
) -> dict:
    """The region batches' image and text tokens in PerceptionLM's own input format.

    Tiles are ``(B, tiles, 3, H, W)`` (PerceptionLM flattens them itself); there is no
    ``image_grids``, since PerceptionLM takes the tile count from the placeholders.
    """
    pixels, _ = tile_geometry(model)
    prompt = image_prompt(model, tiles)
    ids = torch.tensor(prompt + [TEXT_TOKEN] * TEXT_LENGTH, device=device)
    ids = ids.repeat(args.batch_size, 1)
    labels = ids.clone()
    labels[:, : len(prompt)] = IGNORE_INDEX
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "pixel_values": torch.randn(
            args.batch_size, tiles, 3, pixels, pixels, device=device, dtype=dtype
        ),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    args: argparse.Namespace,
    device: torch.device,
) -> list[float]:
    """Seconds per step over ``args.steps`` steps after ``args.warmup`` untimed ones."""
    times = []
    for step in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)  # the device-to-host sync that makes the timing honest
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return times


def build(
    model_class: type[PerceptionLMForConditionalGeneration],
    config: PerceptionLMConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> PerceptionLMForConditionalGeneration:
    """A freshly initialised model in training mode, the LLM on the kernel "auto" picks."""
    torch.manual_seed(0)
    attention = region_attn_implementation("auto", dtype if device.type == "cuda" else None)
    model = model_class._from_config(config, dtype=dtype, attn_implementation=attention)
    return model.to(device).train()


def measure(
    model: nn.Module,
    batches: Iterable[tuple[str, dict]],
    args: argparse.Namespace,
    device: torch.device,
) -> None:
    """Print one table row per named batch: median step time, tokens per second, peak memory.

    ``batches`` may be a generator, so only one batch is held while a variant is measured.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for name, batch in batches:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = statistics.median(time_variant(model, optimizer, batch, args, device))
        tokens = batch["input_ids"].numel()
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        peak_text = f"{peak:9.2f}" if device.type == "cuda" else f"{'-':>9}"
        print(f"{name:<11} {tokens:>7} {seconds * 1e3:>9.1f} {tokens / seconds:>10.0f} {peak_text}")


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = CONFIGS[args.config]()
    tiles = tiles_per_sample(config, args)
    model = build(RegionForConditionalGeneration, config, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"config={args.config} params={params / 1e6:.2f}M device={device} dtype={dtype} "
        f"batch={args.batch_size} grid={tuple(args.grid)} regions={args.regions} "
        f"targets={args.targets} steps={args.steps} (+{args.warmup} warmup) "
        f"attention={model.config.text_config._attn_implementation}"
    )
    print(f"{'variant':<11} {'tokens':>7} {'ms/step':>9} {'tokens/s':>10} {'peak GiB':>9}")
    batches = (
        (name, synthetic_batch(model, args, replay, decode, device, dtype))
        for name, (replay, decode) in REGION_VARIANTS.items()
    )
    measure(model, batches, args, device)
    del model  # plain's peak memory must not count the region model's weights and optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    plain = build(PerceptionLMForConditionalGeneration, plain_config(config), device, dtype)
    measure(plain, [("plain", plain_batch(plain, tiles, args, device, dtype))], args, device)
    params = sum(p.numel() for p in plain.parameters())
    print(f"plain: {type(plain).__name__}, params={params / 1e6:.2f}M (no region heads)")


if __name__ == "__main__":
    main()
