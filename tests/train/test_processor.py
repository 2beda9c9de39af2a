"""The processor: a row in storage form -> the tiny region model's inputs, id by id.

Every expectation is written out from the token contract (README, `RegionConfig`) and the tiny
tokenizer's vocabulary, not from the processor's own helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_api

from regionkit.catalog.masks import encode_mask
from regionkit.catalog.records import make_region, make_row
from regionkit.modeling import tiny_region_config
from regionkit.modeling.token_layout import IGNORE_INDEX
from regionkit.train.collate import collate
from regionkit.train.processor import ProcessorSettings, RegionProcessor, SampleTooLong
from regionkit.train.tiling import tile_image, tile_masks
from regionkit.train.tiny_tokenizer import tiny_tokenizer
from tests.modeling.region_batches import tiny_model

WIDTH, HEIGHT = 112, 56
SETTINGS = ProcessorSettings(tile_size=56, max_tiles=4, patch_size=14, max_length=512)


def _rle(box: tuple[int, int, int, int]) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return encode_mask(mask)


def _row(tmp_path: Path, messages: list[tuple[str, str]], regions: int = 2) -> dict[str, Any]:
    picture = tmp_path / "1.png"
    pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(picture)
    boxes = [(8, 8, 40, 48), (60, 4, 100, 30), (0, 0, 20, 20), (90, 30, 110, 55)][:regions]
    return make_row(
        source="coco",
        split="train",
        native_key="1",
        image_path=str(picture),
        width=WIDTH,
        height=HEIGHT,
        builder="coco",
        builder_version="1",
        source_files=[],
        regions=[make_region(str(k), list(b), _rle(b), "dog") for k, b in enumerate(boxes)],
        messages=[{"role": role, "content": text} for role, text in messages],
    )


@pytest.fixture
def processor() -> RegionProcessor:
    return RegionProcessor(tiny_tokenizer(), tiny_region_config(), SETTINGS)


def test_a_row_becomes_the_token_contracts_ids_labels_boxes_and_masks(processor, tmp_path):
    config, tok = processor.config, processor.tokenizer
    row = _row(
        tmp_path,
        [
            ("user", "what is <region1> ?"),
            ("assistant", "a dog <seg1>"),
            ("user", "where is <region0> and <region1> ?"),
            ("assistant", "<rej>"),
        ],
    )
    sample = processor(row)

    def word(*words: str) -> list[int]:
        return tok.convert_tokens_to_ids(list(words))

    image = [config.image_token_id] * (3 * 4)  # thumbnail + 2 x 1 tiles, 4 tokens each
    feature = [config.region_feature_token_id] * 4  # replay 2 x 2
    prompt = config.region_prompt_token_ids
    user = word("<s>", "<|user|>") + image + word("what", "is") + [prompt[0], *feature]
    user += word("?", "<|end|>", "<|assistant|>")
    answer = word("a", "dog") + config.codebook_token_ids + word("<|end|>")
    user2 = [*word("<|user|>", "where", "is"), prompt[1], *feature, *word("and")]
    user2 += [prompt[0], *feature, *word("?", "<|end|>", "<|assistant|>")]
    answer2 = [config.reject_token_id, *word("<|end|>")]
    assert sample.input_ids.tolist() == user + answer + user2 + answer2
    ignored = [IGNORE_INDEX]
    assert sample.labels.tolist() == (ignored * len(user) + answer + ignored * len(user2) + answer2)

    assert sample.image_grid.tolist() == [1, 2]  # (tiles_h, tiles_w) of a 2:1 image
    pixels = np.array(Image.open(row["image"]["path"]))
    image_tensor = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    torch.testing.assert_close(sample.pixel_values, tile_image(image_tensor, (2, 1), 56))
    # prompt slot 0 is region 1 (named first), slot 1 region 0, slot 2 empty
    first, second = (
        torch.tensor(mask_api.decode(r["mask"]), dtype=torch.float32) for r in row["regions"]
    )
    expected = tile_masks(torch.stack([second, first]), (2, 1), 56)
    torch.testing.assert_close(sample.prompt_masks, expected)  # the used slots only
    # one box per placeholder run, in order, normalised by the image size
    box1, box0 = [60 / 112, 4 / 56, 100 / 112, 30 / 56], [8 / 112, 8 / 56, 40 / 112, 48 / 56]
    torch.testing.assert_close(sample.region_boxes, torch.tensor([box1, box0, box1]))
    assert sample.target_masks.shape == (1, HEIGHT, WIDTH)
    torch.testing.assert_close(sample.target_masks[0], second)  # <seg1>: region 1's mask
    assert sample.turns_cut == 0


def test_a_long_dialogue_is_cut_between_turns(processor, tmp_path):
    row = _row(
        tmp_path,
        [
            ("user", "what is <region0> ?"),
            ("assistant", "a dog <seg0>"),
            ("user", "what is <region1> ?"),
            ("assistant", "a cat"),
        ],
    )
    whole = processor(row)

    def limited(max_length: int) -> RegionProcessor:
        settings = ProcessorSettings(**{**SETTINGS.__dict__, "max_length": max_length})
        return RegionProcessor(processor.tokenizer, processor.config, settings)

    exact = limited(len(whole.input_ids))(row)  # a dialogue exactly at the limit is whole
    assert exact.turns_cut == 0 and exact.input_ids.tolist() == whole.input_ids.tolist()
    short = limited(len(whole.input_ids) - 1)(row)
    assert short.turns_cut == 1
    assert limited(len(short.input_ids))(row).input_ids.tolist() == short.input_ids.tolist()
    with pytest.raises(SampleTooLong, match="first turn"):
        limited(len(short.input_ids) - 1)(row)
    end = processor.tokenizer.convert_tokens_to_ids("<|end|>")
    assert short.input_ids.tolist() == whole.input_ids.tolist()[: len(short.input_ids)]
    assert short.input_ids[-1] == end  # the first answer's end; no dangling user header
    assert len(short.region_boxes) == 1 and len(short.target_masks) == 1


def test_a_turn_naming_more_regions_than_prompt_slots_is_cut(processor, tmp_path):
    messages = [
        ("user", "what is <region0> ?"),
        ("assistant", "a dog"),
        ("user", "what is <region1> and <region2> and <region3> ?"),
        ("assistant", "a dog"),
    ]
    sample = processor(_row(tmp_path, messages, regions=4))  # the tiny model has 3 slots
    assert sample.turns_cut == 1 and len(sample.region_boxes) == 1
    four = [("user", "is <region0> on <region1> and <region2> on <region3> ?"), ("assistant", "a")]
    with pytest.raises(SampleTooLong, match="first turn"):
        processor(_row(tmp_path, four, regions=4))


def test_a_batch_of_processed_rows_trains_the_tiny_model(processor, tmp_path):
    rows = [
        _row(tmp_path, [("user", "segment the dog ."), ("assistant", "<seg0>")]),
        _row(tmp_path, [("user", "what is <region1> ?"), ("assistant", "a dog <seg1> <rej>")]),
    ]
    batch = collate([processor(row) for row in rows], pad_token_id=0)
    model = tiny_model(seed=0).train()
    out = model(**batch)
    assert torch.isfinite(out.loss)
    assert [m.shape for m in out.pred_masks] == [(1, HEIGHT, WIDTH), (1, HEIGHT, WIDTH)]
    out.loss.backward()
