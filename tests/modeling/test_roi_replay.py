"""RoI replay and tile merging: against a naive bilinear loop, the PLM tiler, and bad boxes."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align
from transformers import PerceptionLMImageProcessor

from regionkit.modeling.roi_replay import check_region_boxes, replay_regions
from regionkit.modeling.tiles import TileLayout, merge_tiles

BOXES = [
    (0.0, 0.0, 1.0, 1.0),
    (0.5, 0.5, 1.0, 1.0),
    (0.13, 0.27, 0.71, 0.55),
    (0.4, 0.1, 0.4, 0.9),  # zero width: a one-pixel-wide mask's box
]
TOLERANCES = {
    torch.float64: {"rtol": 1e-10, "atol": 1e-10},
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2},
}


def bilinear(feature_map: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """Value of ``(C, H, W)`` at continuous cell-index ``(y, x)``, clamped to the border."""
    _, height, width = feature_map.shape
    y = min(max(y, 0.0), height - 1.0)
    x = min(max(x, 0.0), width - 1.0)
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    dy, dx = y - y0, x - x0
    return (
        feature_map[:, y0, x0] * (1 - dy) * (1 - dx)
        + feature_map[:, y0, x1] * (1 - dy) * dx
        + feature_map[:, y1, x0] * dy * (1 - dx)
        + feature_map[:, y1, x1] * dy * dx
    )


def naive_replay(feature_map: torch.Tensor, box: tuple, grid: int, ratio: int) -> torch.Tensor:
    """Slow reference: a normalised box averaged over ``ratio**2`` samples per bin, ``(k*k, C)``.

    Cell i covers [i, i + 1) and its value sits at its centre i + 0.5, so a continuous coordinate
    u reads index u - 0.5.
    """
    _, height, width = feature_map.shape
    x1, y1, x2, y2 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    bin_h, bin_w = (y2 - y1) / grid, (x2 - x1) / grid
    tokens = []
    for row in range(grid):
        for col in range(grid):
            total = torch.zeros(feature_map.shape[0], dtype=torch.float64)
            for iy in range(ratio):
                for ix in range(ratio):
                    y = y1 + (row + (iy + 0.5) / ratio) * bin_h - 0.5
                    x = x1 + (col + (ix + 0.5) / ratio) * bin_w - 0.5
                    total += bilinear(feature_map.double(), y, x)
            tokens.append(total / ratio**2)
    return torch.stack(tokens)


@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize("grid,ratio", [(2, 2), (3, 1), (4, 3)])
def test_replay_matches_naive_bilinear_loop(dtype, grid, ratio):
    feature_map = torch.randn(3, 6, 10, generator=torch.Generator().manual_seed(0)).to(dtype)
    boxes = torch.tensor(BOXES, dtype=torch.float32)
    got = replay_regions(feature_map, boxes, grid=grid, sampling_ratio=ratio)
    assert got.shape == (len(BOXES), grid * grid, 3) and got.dtype == dtype
    want = torch.stack([naive_replay(feature_map, box, grid, ratio) for box in boxes.tolist()])
    torch.testing.assert_close(got.double(), want, **TOLERANCES[dtype])


def test_quadrant_box_reads_its_quadrant_not_the_top_left_corner():
    # Each quadrant of an 8 x 8 map holds its own constant; sample points of an aligned 2 x 2
    # grid over the bottom-right quadrant fall on rows/columns 4..7 exactly.
    quadrants = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    feature_map = quadrants.repeat_interleave(4, 0).repeat_interleave(4, 1)[None]
    box = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    got = replay_regions(feature_map, box, grid=2, sampling_ratio=2)
    torch.testing.assert_close(got, torch.full((1, 4, 1), 4.0))
    # GAR's call: box already in map cells *and* spatial_scale = 1/28 -> the top-left value.
    gar = roi_align(feature_map[None], [box * 8], output_size=2, spatial_scale=1 / 28, aligned=True)
    torch.testing.assert_close(gar, torch.full((1, 1, 2, 2), 1.0))


def test_replay_changes_when_the_box_moves():
    feature_map = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1))
    left = replay_regions(feature_map, torch.tensor([[0.0, 0.0, 0.5, 0.5]]), 2, 2)
    right = replay_regions(feature_map, torch.tensor([[0.5, 0.0, 1.0, 0.5]]), 2, 2)
    assert not torch.allclose(left, right)


def test_replay_gradcheck_float64():
    feature_map = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor(BOXES[1:3], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda fmap: replay_regions(fmap, boxes, grid=2, sampling_ratio=2), (feature_map,)
    )


@pytest.mark.parametrize(
    "boxes,message",
    [
        (torch.tensor([0.1, 0.1, 0.5, 0.5]), "must be \\(num_regions, 4\\)"),
        (torch.zeros(2, 3), "must be \\(num_regions, 4\\)"),
        (torch.tensor([[0.6, 0.1, 0.5, 0.5]]), "x1 <= x2"),
        (torch.tensor([[0.1, 0.6, 0.5, 0.5]]), "y1 <= y2"),
        (torch.tensor([[0.1, 0.1, 1.2, 0.5]]), "must lie in \\[0, 1\\]"),
        (torch.tensor([[-0.1, 0.1, 0.5, 0.5]]), "must lie in \\[0, 1\\]"),
        (torch.tensor([[0.1, float("nan"), 0.5, 0.5]]), "non-finite"),
        (torch.tensor([[0, 0, 1, 1]]), "floating point"),
    ],
)
def test_malformed_boxes_raise(boxes, message):
    with pytest.raises(ValueError, match=message):
        check_region_boxes(boxes, sample=2)


@pytest.mark.parametrize("tiles_h,tiles_w", [(1, 1), (2, 3), (3, 1)])
def test_merge_tiles_inverts_the_perception_lm_tiler(tiles_h, tiles_w):
    image = torch.randn(1, 5, tiles_h * 4, tiles_w * 6)
    tiles = PerceptionLMImageProcessor()._split(image, tiles_w, tiles_h)[0]  # (th * tw, C, h, w)
    torch.testing.assert_close(merge_tiles(tiles, tiles_h, tiles_w), image[0], rtol=0, atol=0)


def test_tile_layout_splits_packed_tiles_and_drops_thumbnails():
    layout = TileLayout.from_grids(torch.tensor([[1, 2], [2, 2]]), thumbnail=True, batch_size=2)
    assert layout.tiles_per_sample == [3, 5] and layout.total_tiles == 8
    packed = torch.arange(8.0)
    first, second = layout.grid_tiles(packed)
    assert first.tolist() == [1.0, 2.0] and second.tolist() == [4.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="expected 8 packed tiles"):
        layout.grid_tiles(torch.arange(7.0))


@pytest.mark.parametrize(
    "grids,message",
    [
        (torch.tensor([[1, 0]]), ">= 1 tile per side"),
        (torch.tensor([[1.0, 1.0]]), "integer tensor"),
        (torch.tensor([[1, 1], [1, 1]]), "\\(batch_size, 2\\) = \\(1, 2\\)"),
    ],
)
def test_bad_image_grids_raise(grids, message):
    with pytest.raises(ValueError, match=message):
        TileLayout.from_grids(grids, thumbnail=False, batch_size=1)
