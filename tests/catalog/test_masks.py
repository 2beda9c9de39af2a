"""Mask utilities against pycocotools' own reference path (`COCO.annToMask`)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pycocotools import mask as mask_api
from pycocotools.coco import COCO

from regionkit.catalog.masks import (
    MaskError,
    MaskReading,
    boxes_to_rle,
    compressed_counts,
    covers_no_pixel,
    decode_rle,
    encode_mask,
    flatten_polygon,
    read_segmentation,
    rle_area,
    rle_from_dict,
    rle_to_bbox,
)


def test_every_fixture_annotation_matches_ann_to_mask(coco_sample):
    coco = COCO(str(coco_sample.annotations))
    kinds = set()
    for ann in coco.dataset["annotations"]:
        image = coco.imgs[ann["image_id"]]
        segmentation = ann["segmentation"]
        kinds.add(
            "multi_polygon"
            if isinstance(segmentation, list) and len(segmentation) > 1
            else "crowd_rle"
            if isinstance(segmentation, dict) and isinstance(segmentation["counts"], list)
            else "compressed_rle"
            if isinstance(segmentation, dict)
            else "polygon"
        )
        reading = read_segmentation(segmentation, image["height"], image["width"])
        if isinstance(segmentation, list) and any(len(part) < 6 for part in segmentation):
            kinds.add("sliver_part")
            assert reading.dropped_parts == 1
        if reading.rle is None:
            kinds.add("no_pixel")
            assert coco.annToMask(ann).sum() == 0
            continue
        assert isinstance(reading.rle["counts"], str)
        np.testing.assert_array_equal(decode_rle(reading.rle), coco.annToMask(ann))
    assert kinds == {
        "multi_polygon",
        "crowd_rle",
        "compressed_rle",
        "polygon",
        "sliver_part",
        "no_pixel",
    }


def test_worked_example_from_the_cocoapi_semantics():
    # rows 1-2, columns 1-3 of a 4x5 image: the polygon's vertices are continuous coordinates
    rle = read_segmentation([[1, 1, 4, 1, 4, 3, 1, 3]], 4, 5).rle
    expected = np.zeros((4, 5), dtype=np.uint8)
    expected[1:3, 1:4] = 1
    np.testing.assert_array_equal(decode_rle(rle), expected)
    assert rle == {"size": [4, 5], "counts": "5220003"}
    assert rle_area(rle) == 6
    assert rle_to_bbox(rle) == [1.0, 1.0, 4.0, 3.0]


def test_compressed_counts_as_bytes_or_str_are_the_same_mask():
    mask = np.zeros((7, 9), dtype=np.uint8)
    mask[2:5, 3:8] = 1
    raw = mask_api.encode(np.asfortranarray(mask))
    assert isinstance(raw["counts"], bytes)
    from_bytes = rle_from_dict(raw, 7, 9)
    from_str = rle_from_dict({"size": raw["size"], "counts": raw["counts"].decode()}, 7, 9)
    assert from_bytes == from_str == encode_mask(mask)
    np.testing.assert_array_equal(decode_rle(from_str), mask)


def test_uncompressed_rle_is_column_major_and_starts_with_zeros():
    # 2x3 image, column-major: pixels (0,0),(1,0) zero, (0,1),(1,1),(0,2) one, (1,2) zero
    rle = rle_from_dict({"counts": [2, 3, 1], "size": [2, 3]}, 2, 3)
    np.testing.assert_array_equal(decode_rle(rle), [[0, 1, 1], [0, 1, 0]])


def test_nested_point_pairs_are_flattened():
    assert flatten_polygon([[1, 2], [3, 4], [5, 6]]).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    nested = read_segmentation([[[1, 1], [4, 1], [4, 3], [1, 3]]], 4, 5)
    assert nested == read_segmentation([[1, 1, 4, 1, 4, 3, 1, 3]], 4, 5)


def test_boxes_become_one_mask_of_their_union():
    rle = boxes_to_rle([[1, 1, 3, 2], [2, 0, 4, 3]], 4, 5)
    expected = np.zeros((4, 5), dtype=np.uint8)
    expected[1:2, 1:3] = 1
    expected[0:3, 2:4] = 1
    np.testing.assert_array_equal(decode_rle(rle), expected)
    assert rle_to_bbox(rle) == [1.0, 0.0, 4.0, 3.0]


def test_empty_mask_has_no_box():
    assert rle_to_bbox(encode_mask(np.zeros((3, 3), dtype=np.uint8))) is None


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ([1.0, 1.0, 5.0, 1.0, 5.0, 5.0], "flat list"),  # pycocotools raises TypeError
        ([[1.0, 1.0, 5.0, float("nan"), 5.0, 5.0]], "non-finite"),
        ([{"counts": [9], "size": [3, 3]}, [1.0, 1.0, 2.0, 1.0, 2.0, 2.0]], "mixes RLE dicts"),
        ({"counts": [3, 3], "size": [3, 3]}, "counts sum to 6, not h"),
        ({"counts": [9], "size": [4, 3]}, "does not match"),
        ({"counts": [-1, 10], "size": [3, 3]}, "negative run"),
        ({"counts": "zzzz", "size": [3, 3]}, "outside '0'..'o'"),  # pycocotools decodes it
        ({"counts": "5", "size": [3, 3]}, "compressed RLE counts sum to 5, not h"),
        ({"counts": "0P", "size": [3, 3]}, "middle of a run"),
        ({"counts": "@", "size": [3, 3]}, "negative run"),  # a sign-extended first run
        ({"counts": "P" * 6 + "0", "size": [3, 3]}, "more than 6 characters"),  # C int overflow
        ({"counts": "5\u00e9", "size": [3, 3]}, "not ASCII"),
        ([[1.0, 1.0, 5.0, 1.0, 5.0, 1e9]], "outside the 3x3 image"),  # minutes in pycocotools
        ({"counts": [9], "size": ["3", 3]}, "integers"),
        ({"size": [3, 3]}, "no 'counts'"),
        ("polygon", "must be polygon parts or an RLE dict"),
    ],
)
def test_malformed_segmentations_raise_a_clear_error(segmentation, message):
    with pytest.raises(MaskError, match=message):
        read_segmentation(segmentation, 3, 3)


def test_compressed_counts_are_the_run_lengths_pycocotools_encoded():
    rng = np.random.default_rng(0)
    for trial in range(200):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        mask = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        if trial % 4 == 0:
            mask[:] = trial % 8 == 0
        flat = mask.flatten(order="F")
        changes = np.flatnonzero(np.diff(flat)) + 1
        edges = [0, *changes.tolist(), flat.size]
        runs = [b - a for a, b in itertools.pairwise(edges)]
        if flat[0] == 1:
            runs = [0, *runs]  # counts always start with a (possibly empty) run of zeros
        encoded = mask_api.encode(np.asfortranarray(mask))["counts"]
        assert compressed_counts(encoded).tolist() == runs


def test_parts_of_fewer_than_three_points_are_dropped_and_counted():
    # the example: pycocotools merges both parts, the 2-point one adding nothing
    segmentation = [[10, 5, 20, 5, 20, 15, 10, 15], [30, 20, 30.5, 20.5]]
    reading = read_segmentation(segmentation, 40, 50)
    reference = mask_api.merge(mask_api.frPyObjects(segmentation, 40, 50))
    assert mask_api.area(reference) == 100
    np.testing.assert_array_equal(decode_rle(reading.rle), mask_api.decode(reference))
    assert reading.dropped_parts == 1
    odd = read_segmentation([[30, 20, 35, 20, 35], [10, 5, 20, 5, 20, 15, 10, 15]], 40, 50)
    assert (odd.rle, odd.dropped_parts) == (reading.rle, 1)


@pytest.mark.parametrize(
    ("segmentation", "dropped"),
    [
        ([[1.0, 1.0, 2.0, 2.0]], 1),  # 4 numbers: pycocotools would read this as a box
        ([[1.0, 1.0, 5.0, 1.0, 5.0], [2.0, 2.0]], 2),
        ([[5.0, 5.0, 5.0, 5.0, 5.0, 5.0]], 0),  # 3 points on one spot: no area
        ([], 0),
        ({"counts": [9], "size": [3, 3]}, 0),  # an RLE of zeros
    ],
)
def test_segmentations_that_cover_no_pixel_give_no_mask(segmentation, dropped):
    assert read_segmentation(segmentation, 3, 3) == MaskReading(None, dropped_parts=dropped)


def _refer_get_mask(segmentation, height, width):
    """lichengunc/refer `REFER.getMask` for RLE: decode the list (H x W x N) and sum over N."""
    return (np.sum(mask_api.decode(segmentation), axis=2) > 0).astype(np.uint8)


def test_refclef_lists_of_rle_dicts_are_the_union_refer_decodes():
    first = np.zeros((6, 7), dtype=np.uint8)
    first[1:3, 1:4] = 1
    second = np.zeros((6, 7), dtype=np.uint8)
    second[2:5, 3:6] = 1
    dicts = [
        {"size": [6, 7], "counts": mask_api.encode(np.asfortranarray(m))["counts"].decode()}
        for m in (first, second)
    ]
    for segmentation in (dicts[:1], dicts):
        reading = read_segmentation(segmentation, 6, 7)
        np.testing.assert_array_equal(decode_rle(reading.rle), _refer_get_mask(segmentation, 6, 7))
    assert read_segmentation(dicts[0], 6, 7) == read_segmentation(dicts[:1], 6, 7)
    assert rle_area(read_segmentation(dicts, 6, 7).rle) == 6 + 9 - 1


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (480, 640), (1000, 1000)])
def test_an_empty_mask_is_told_from_its_counts_alone(shape):
    height, width = shape
    masks = [np.zeros(shape, dtype=np.uint8), np.ones(shape, dtype=np.uint8)]
    for index in (0, height * width - 1, height * width // 2):  # first, last, middle pixel
        mask = np.zeros(height * width, dtype=np.uint8)
        mask[index] = 1
        masks.append(mask.reshape((width, height)).T)  # column-major, as pycocotools counts
    for mask in masks:
        counts = encode_mask(mask)["counts"]
        assert covers_no_pixel(counts) == (mask.sum() == 0), (shape, counts)
