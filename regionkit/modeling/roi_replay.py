"""RoI-align feature replay: a region's box, cut out of the merged tile map, as ``k x k`` tokens.

Coordinates, once: a box is normalised ``(x1, y1, x2, y2)`` in ``[0, 1]`` of the *original*
image, continuous (pixel edges, not centres). The merged map of one sample covers the whole
image (``tiles.merge_tiles``), so the box in map cells is ``(x1 * W, y1 * H, x2 * W, y2 * H)``,
and ``roi_align`` is called on those with ``spatial_scale=1.0`` and ``aligned=True`` (cell i
covers ``[i, i + 1)``, its centre is ``i + 0.5``). Scaling the box *and* passing a
``spatial_scale`` (GAR: ``spatial_scale=1/28`` on boxes already in cells) shrinks every box into
the top-left corner.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

__all__ = ["check_region_boxes", "replay_regions"]

EXACT_DTYPES = (torch.float32, torch.float64)


def check_region_boxes(boxes: Tensor, sample: int) -> None:
    """Raise ``ValueError`` unless ``boxes`` is ``(R, 4)`` finite normalised xyxy, x1<=x2, y1<=y2.

    ``sample`` is the batch index, quoted in the message.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(
            f"region_boxes[{sample}] must be (num_regions, 4) normalised xyxy, "
            f"got shape {tuple(boxes.shape)}"
        )
    if not boxes.dtype.is_floating_point:
        raise ValueError(f"region_boxes[{sample}] must be floating point, got {boxes.dtype}")
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"region_boxes[{sample}] has non-finite values: {boxes.tolist()}")
    outside = (boxes < 0) | (boxes > 1)
    if bool(outside.any()):
        rows = outside.any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"region_boxes[{sample}] must lie in [0, 1]; rows {rows} do not: {boxes[rows].tolist()}"
        )
    flipped = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(flipped.any()):
        rows = flipped.nonzero().flatten().tolist()
        raise ValueError(
            f"region_boxes[{sample}] needs x1 <= x2 and y1 <= y2; rows {rows} do not: "
            f"{boxes[rows].tolist()}"
        )


def replay_regions(feature_map: Tensor, boxes: Tensor, grid: int, sampling_ratio: int) -> Tensor:
    """RoI-align each box of one sample's merged map into ``grid x grid`` feature tokens.

    Args:
        feature_map: ``(C, H, W)``, one sample's merged tile map.
        boxes: ``(R, 4)`` normalised xyxy of the original image (see the module docstring).
        grid: k, output bins per side.
        sampling_ratio: bilinear samples per bin side (``roi_align``'s ``sampling_ratio``).

    Returns:
        ``(R, k * k, C)`` tokens in row-major bin order (top row first, left to right), in the
        map's dtype. Half-precision maps are aligned in float32; float32 and float64 stay as is.
    """
    height, width = feature_map.shape[-2:]
    compute_dtype = feature_map.dtype if feature_map.dtype in EXACT_DTYPES else torch.float32
    scale = torch.tensor([width, height, width, height], dtype=compute_dtype, device=boxes.device)
    cells = boxes.to(compute_dtype) * scale
    pooled = roi_align(
        feature_map[None].to(compute_dtype),
        [cells.to(feature_map.device)],
        output_size=grid,
        spatial_scale=1.0,
        sampling_ratio=sampling_ratio,
        aligned=True,
    )
    # (R, C, k, k) -> (R, k * k, C)
    return pooled.flatten(2).transpose(1, 2).to(feature_map.dtype)
