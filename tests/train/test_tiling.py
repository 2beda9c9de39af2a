"""Tiles as PerceptionLM's image processor makes them, with the grid, and prompt masks tiled
the same way: checked pixel for pixel against transformers' processor itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import PerceptionLMImageProcessor

from regionkit.train.tiling import choose_grid, tile_image, tile_masks

SIZES = [(8, 8), (30, 20), (20, 30), (200, 40), (40, 200), (168, 112), (113, 57), (219, 141)]


@pytest.mark.parametrize(("tile", "max_tiles"), [(28, 6), (28, 12), (16, 36)])
def test_tiles_and_their_grid_are_the_processors(tile, max_tiles):
    processor = PerceptionLMImageProcessor(tile_size=tile, max_num_tiles=max_tiles)
    for width, height in SIZES:
        pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3))
        picture = Image.fromarray(pixels.astype(np.uint8))
        expected = processor.preprocess(picture, return_tensors="pt")["pixel_values"][0]
        grid = choose_grid(width, height, tile, max_tiles)
        image = torch.from_numpy(pixels.astype(np.uint8)).permute(2, 0, 1).contiguous()
        ours = tile_image(image, grid, tile)
        assert ours.shape == expected.shape, (width, height, grid)
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_the_grid_is_the_largest_canvas_of_the_images_shape():
    # 1000 x 300 scales up to 4480 x 1344 on 10 x 3 tiles; 11 x 3 and 12 x 3 give the same
    # height, and the smaller canvas wins a tie
    assert choose_grid(1000, 300, 448, 36) == (10, 3)
    assert choose_grid(300, 1000, 448, 36) == (3, 10)  # columns and rows not swapped
    assert choose_grid(5000, 500, 448, 4) == (4, 1)  # fits no canvas: the closest ratio
    assert choose_grid(640, 480, 448, 1) == (1, 1)


def test_a_prompt_mask_lands_on_the_tiles_its_region_is_on():
    width, height, tile = 120, 60, 20  # at most 6 tiles of 20 pixels: a 2 x 1 grid
    grid = choose_grid(width, height, tile, 6)
    assert grid == (2, 1)
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    mask = torch.zeros(1, height, width)
    image[:, 0:20, 80:120] = 255  # top right corner
    mask[:, 0:20, 80:120] = 1
    tiles = tile_image(image, grid, tile)
    prompts = tile_masks(mask, grid, tile)
    assert prompts.shape == (tiles.shape[0], 1, tile, tile)
    bright = tiles.amax(dim=(1, 2, 3)) > 0
    covered = prompts.amax(dim=(1, 2, 3)) > 127
    assert bright.tolist() == covered.tolist()
    assert covered.tolist() == [True, False, True]  # the thumbnail and the right tile


def test_tiles_are_row_major_so_the_top_right_region_is_the_second_tile():
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    mask = torch.zeros(1, 40, 40)
    image[:, 0:20, 20:40] = 255  # rows are y: the top right quadrant
    mask[:, 0:20, 20:40] = 1
    grid = choose_grid(40, 40, 20, 4)
    assert grid == (2, 2)
    bright = tile_image(image, grid, 20).amax(dim=(1, 2, 3)) > 0
    covered = tile_masks(mask, grid, 20).amax(dim=(1, 2, 3)) > 127
    assert bright.tolist() == covered.tolist() == [True, False, True, False, False]
