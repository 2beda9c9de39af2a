"""One region from an annotated box and a segmentation: which box wins, what is repaired."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_api

from regionkit.builders.fields import RecordError
from regionkit.builders.regions import boxed_region
from regionkit.catalog.masks import decode_rle

SQUARE = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]  # covers x 10..30, y 10..20


def _region(box, segmentation, width=40, height=30):
    adjustments: Counter[str] = Counter()
    region = boxed_region("7", box, segmentation, width, height, adjustments, category="cup")
    return region, +adjustments


def test_the_annotated_box_is_kept_clipped_and_the_mask_is_the_segmentation():
    # a stored box a pixel past the image's left edge and the polygon's float extent around it
    region, adjustments = _region([-1.5, 9.6, 30.4, 20.3], SQUARE)
    assert region["bbox"] == [0.0, 9.6, 30.4, 20.3]
    expected = mask_api.decode(mask_api.merge(mask_api.frPyObjects(SQUARE, 30, 40)))
    np.testing.assert_array_equal(decode_rle(region["mask"]), expected)
    assert (region["id"], region["category"]) == ("7", "cup")
    assert adjustments == Counter()


def test_a_sliver_part_is_dropped_and_the_box_still_spans_it():
    sliver = [35.0, 25.0, 35.5, 25.5]
    region, adjustments = _region([10.0, 10.0, 35.5, 25.5], [*SQUARE, sliver])
    assert region["bbox"] == [10.0, 10.0, 35.5, 25.5]
    assert int(mask_api.area(region["mask"])) == 200
    assert adjustments == Counter({"polygon_part_dropped": 1})


def test_a_tiny_object_whose_mask_covers_no_pixel_stays_box_only():
    triangle = [5.0, 5.0, 5.3, 5.0, 5.3, 5.3]
    assert mask_api.area(mask_api.merge(mask_api.frPyObjects([triangle], 30, 40))) == 0
    region, adjustments = _region([5.0, 5.0, 5.3, 5.3], [triangle])
    assert region["mask"] is None
    assert region["bbox"] == [5.0, 5.0, 5.3, 5.3]
    assert adjustments == Counter({"mask_covers_no_pixel": 1})


def test_without_a_box_the_mask_gives_it():
    region, adjustments = _region(None, SQUARE)
    assert region["bbox"] == [10.0, 10.0, 30.0, 20.0]
    assert adjustments == Counter({"bbox_from_mask": 1})


@pytest.mark.parametrize(
    ("box", "segmentation", "code"),
    [
        ([10.0, 10.0, 30.0, 20.0], [[0.0, 0.0, 8.0, 0.0, 8.0, 8.0]], "bbox_mask_mismatch"),
        ([10.0, 10.0, 20.0, 20.0], SQUARE, "bbox_mask_mismatch"),  # the mask reaches x = 30
        ([30.0, 10.0, 45.0, 20.0], SQUARE, "bbox_outside_image"),
        (None, [[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]], "empty_mask"),
        ([5.0, 5.0, 5.0, 9.0], [], "empty_mask"),  # a box of no width and no mask
        ([10.0, 10.0, 30.0, 20.0], [10.0, 10.0, 30.0, 10.0, 30.0, 20.0], "malformed_polygon"),
    ],
)
def test_annotations_that_cannot_be_a_region_say_why(box, segmentation, code):
    with pytest.raises(RecordError) as caught:
        _region(box, segmentation)
    assert caught.value.code == code


def test_a_mask_slightly_past_its_box_is_the_same_object():
    # COCO crowd boxes are a pixel short of their RLE's extent
    region, _ = _region([10.0, 10.0, 29.0, 19.0], SQUARE)
    assert region["bbox"] == [10.0, 10.0, 29.0, 19.0]


def test_the_tolerance_follows_each_side_of_the_box():
    # a wide box: 10% of its width is 10 px, of its height under the 2 px floor
    wide = [0.0, 10.0, 100.0, 20.0]
    past_right = [[60.0, 11.0, 108.0, 11.0, 108.0, 19.0, 60.0, 19.0]]  # 8 px past x2
    past_bottom = [[10.0, 12.0, 90.0, 12.0, 90.0, 24.0, 10.0, 24.0]]  # 4 px past y2
    region, _ = _region(wide, past_right, width=120, height=40)
    assert region["bbox"] == wide
    with pytest.raises(RecordError) as caught:
        _region(wide, past_bottom, width=120, height=40)
    assert caught.value.code == "bbox_mask_mismatch"
