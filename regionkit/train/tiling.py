"""PerceptionLM's thumbnail-and-tiles view of an image, with the tile grid it chose.

transformers' `PerceptionLMImageProcessor` ("thumb+tile") resizes an image to one tile (the
thumbnail) and onto a canvas of `tiles_w x tiles_h` tiles, which it splits row-major; it
returns the tiles but not the grid, which the region model needs (`image_grids`), and it has
no way to tile anything but the image. This module chooses the grid by the same rule, written
out here against its public behaviour (a test compares pixels with the processor's output), and
tiles the image and each region's prompt mask the same way, so a prompt lands on its region.

The rule, for at most `max_tiles` tiles of `tile` pixels:

1. Grids are listed by tile count, from `max_tiles` down to 1, each count's factor pairs
   `(w, h)` by rising `w`, grouped by the ratio `w / h` in the order ratios first appear.
2. Among grids whose canvas holds the image without shrinking it, the one where the image,
   scaled to fit the canvas with its aspect kept, has the longest short side wins; a later grid
   wins ties.
3. If none holds it, the grid of the closest ratio wins: for a wide image the closest ratio
   not above its own, then the widest grid of that ratio; for a tall image the closest ratio
   above its own (compared as inverses), then the tallest.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torchvision.transforms.v2.functional as tvF
from torch import Tensor

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
"""PerceptionLM's normalisation (ImageNet's "standard" mean and std)."""

Grid = tuple[int, int]
"""`(tiles_w, tiles_h)`: tile columns and rows, as the rule counts them."""


@cache
def _grids_by_ratio(max_tiles: int) -> tuple[tuple[float, tuple[Grid, ...]], ...]:
    """Step 1: every grid of at most `max_tiles` tiles, grouped by `w / h` in first-seen order."""
    groups: dict[float, list[Grid]] = {}
    for count in range(max_tiles, 0, -1):
        for w in range(1, count + 1):
            if count % w == 0:
                groups.setdefault(w / (count // w), []).append((w, count // w))
    return tuple((ratio, tuple(grids)) for ratio, grids in groups.items())


def _fitted(width: int, height: int, canvas_w: int, canvas_h: int) -> tuple[float, float]:
    """The image scaled to fit the canvas, aspect kept: (width, height), the scaled-down side
    floored as the processor floors it."""
    scale = min(canvas_w / width, canvas_h / height)
    if width > height:
        new_w = scale * width
        return new_w, math.floor(new_w / (width / height))
    new_h = scale * height
    return math.floor(new_h * (width / height)), new_h


def choose_grid(width: int, height: int, tile: int, max_tiles: int) -> Grid:
    """The `(tiles_w, tiles_h)` the processor tiles a `width x height` image into."""
    if max_tiles <= 1:
        return (1, 1)
    wide = width >= height
    best: Grid | None = None
    best_fit: tuple[float, float] = (0.0, 0.0)
    for _, grids in _grids_by_ratio(max_tiles):
        for w, h in grids:
            if w * tile < width or h * tile < height:
                continue
            fit = _fitted(width, height, w * tile, h * tile)
            short_side = 1 if wide else 0  # height for a wide image, width for a tall one
            if best is None or fit[short_side] >= best_fit[short_side]:
                best, best_fit = (w, h), fit
    if best is not None:
        return best
    ratio = width / height
    groups = dict(_grids_by_ratio(max_tiles))
    if wide:
        closest = min((r for r in groups if r <= ratio), key=lambda r: abs(r - ratio))
        return max(groups[closest], key=lambda grid: grid[0])
    closest = min((r for r in groups if r > ratio), key=lambda r: abs(1 / r - 1 / ratio))
    return max(groups[closest], key=lambda grid: grid[1])


def thumb_and_tiles(
    planes: Tensor, grid: Grid, tile: int, interpolation: tvF.InterpolationMode
) -> Tensor:
    """`(C, H, W)` -> `(1 + w * h, C, tile, tile)`: the thumbnail, then the grid's tiles
    row-major, written into one tensor (no intermediate copies of the canvas's tiles)."""
    tiles_w, tiles_h = grid
    channels = planes.shape[0]
    out = planes.new_empty((1 + tiles_w * tiles_h, channels, tile, tile))
    out[0] = tvF.resize(planes, [tile, tile], interpolation=interpolation, antialias=True)
    canvas = tvF.resize(
        planes, [tiles_h * tile, tiles_w * tile], interpolation=interpolation, antialias=True
    )
    # (C, th * t, tw * t) -> (th, tw, C, t, t), copied once into the output
    out[1:].view(tiles_h, tiles_w, channels, tile, tile).copy_(
        canvas.view(channels, tiles_h, tile, tiles_w, tile).permute(1, 3, 0, 2, 4)
    )
    return out


def tile_image(image: Tensor, grid: Grid, tile: int) -> Tensor:
    """An RGB `(3, H, W)` uint8 image as normalised float32 tiles `(1 + w * h, 3, t, t)`,
    resized bicubically as the processor resizes it."""
    tiles = thumb_and_tiles(image, grid, tile, tvF.InterpolationMode.BICUBIC).to(torch.float32)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1) * 255
    return tiles.sub_(mean).div_(std)


def tile_masks(masks: Tensor, grid: Grid, tile: int) -> Tensor:
    """Region masks `(R, H, W)` (0/1) as prompt tiles `(1 + w * h, R, t, t)`, uint8 0-255,
    laid out exactly as the image's tiles and resampled bilinearly with antialiasing (soft
    edges). 8-bit, because torchvision resizes 8-bit planes about five times faster than
    floats and they take a quarter of the memory; `collate` scales them to [0, 1]."""
    if masks.shape[0] == 0:
        return torch.zeros((1 + grid[0] * grid[1], 0, tile, tile), dtype=torch.uint8)
    planes = masks.to(torch.uint8) * 255
    return thumb_and_tiles(planes, grid, tile, tvF.InterpolationMode.BILINEAR)
