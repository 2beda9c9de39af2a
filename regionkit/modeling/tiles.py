"""Tile layouts of a batch: which packed tiles belong to which sample, and merging them back.

PerceptionLM's image processor (``vision_input_type="thumb+tile"``) turns one image into a
thumbnail (the whole image resized to one tile, aspect ratio not kept) followed by
``tiles_h x tiles_w`` tiles of the image stretched onto a ``tiles_h x tiles_w`` canvas, split
row-major. A region batch packs every sample's tiles along one axis, ``(sum_b tiles_b, C, H, W)``,
and states each sample's ``(tiles_h, tiles_w)``. Because the canvas is the whole image stretched,
normalised image coordinates map directly onto the merged tile map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TileLayout", "merge_tiles"]


@dataclass(frozen=True)
class TileLayout:
    """Per-sample tile grids of a packed batch.

    Attributes:
        grids: ``(tiles_h, tiles_w)`` per sample.
        thumbnail: whether each sample's tiles start with a thumbnail.
    """

    grids: tuple[tuple[int, int], ...]
    thumbnail: bool

    @classmethod
    def from_grids(cls, image_grids: Tensor, thumbnail: bool, batch_size: int) -> TileLayout:
        """Read ``image_grids (B, 2)`` integer ``(tiles_h, tiles_w)`` rows; both must be >= 1."""
        if image_grids.shape != (batch_size, 2) or image_grids.dtype.is_floating_point:
            raise ValueError(
                f"image_grids must be an integer tensor (batch_size, 2) = ({batch_size}, 2) of "
                f"(tiles_h, tiles_w), got {image_grids.dtype} {tuple(image_grids.shape)}"
            )
        grids = tuple((int(h), int(w)) for h, w in image_grids.tolist())
        bad = [grid for grid in grids if min(grid) < 1]
        if bad:
            raise ValueError(f"image_grids rows must be >= 1 tile per side, got {bad}")
        return cls(grids=grids, thumbnail=thumbnail)

    @property
    def tiles_per_sample(self) -> list[int]:
        """Packed tiles of each sample, thumbnail included."""
        extra = 1 if self.thumbnail else 0
        return [extra + h * w for h, w in self.grids]

    @property
    def total_tiles(self) -> int:
        return sum(self.tiles_per_sample)

    def grid_tiles(self, tiles: Tensor) -> list[Tensor]:
        """Split packed per-tile tensors ``(total_tiles, ...)`` into each sample's grid tiles.

        The thumbnail, when present, is dropped: the returned tensor of sample b is
        ``(tiles_h * tiles_w, ...)`` in row-major tile order.
        """
        if tiles.shape[0] != self.total_tiles:
            raise ValueError(
                f"expected {self.total_tiles} packed tiles for grids {list(self.grids)} "
                f"(thumbnail={self.thumbnail}), got {tiles.shape[0]}"
            )
        skip = 1 if self.thumbnail else 0
        return [part[skip:] for part in torch.split(tiles, self.tiles_per_sample)]


def merge_tiles(tiles: Tensor, tiles_h: int, tiles_w: int) -> Tensor:
    """Reassemble row-major tiles into one map: the inverse of the processor's tile split.

    Args:
        tiles: ``(tiles_h * tiles_w, C, h, w)``, tile ``r * tiles_w + c`` at row r, column c.
        tiles_h: tile rows.
        tiles_w: tile columns.

    Returns:
        ``(C, tiles_h * h, tiles_w * w)``.
    """
    count, channels, height, width = tiles.shape
    if count != tiles_h * tiles_w:
        raise ValueError(f"{count} tiles cannot form a {tiles_h} x {tiles_w} grid")
    # (th, tw, C, h, w) -> (C, th, h, tw, w)
    grid = tiles.reshape(tiles_h, tiles_w, channels, height, width).permute(2, 0, 3, 1, 4)
    return grid.reshape(channels, tiles_h * height, tiles_w * width)
