"""One dataset row -> the region model's inputs, by the token contract of `RegionConfig`.

- The image: PerceptionLM's thumbnail and tiles (`tiling`), its `(tiles_h, tiles_w)`, and the
  image placeholder tokens (`(tile // patch // pooling)**2` per tile) at the start of the first
  user turn.
- The dialogue: the tokenizer's own chat template, rendered around the messages and tokenised
  piece by piece, so markup becomes token ids and never text: `<regionK>` -> K's prompt token
  and `replay_grid**2` placeholders (its box in `region_boxes`, its mask in channel P of
  `prompt_masks`, tiled as the image), `<segK>` -> the codebook tokens (K's mask appended to
  `target_masks`), `<rej>` -> the reject token. Labels cover assistant turns and the token that
  ends them; nothing else.
- Limits: a dialogue longer than `max_length` tokens, or naming more regions than there are
  prompt slots, is cut before the first turn that does not fit; a turn is never split, so no
  token group is. Cuts are counted on the sample.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from regionkit.catalog.masks import decode_rle
from regionkit.modeling import RegionConfig
from regionkit.modeling.token_layout import IGNORE_INDEX
from regionkit.train.tiling import choose_grid, tile_image, tile_masks

PIECES = re.compile(r"<(region|seg)(\d+)>|<rej>")
_SENTINEL = "\x00regionkit-message-{}\x00"
_SENTINELS = re.compile("\x00regionkit-message-\\d+\x00")
"""Stand-ins for message contents while the chat template renders the text around them."""


class SampleTooLong(ValueError):
    """Not even the first turn of a row fits the length limit."""


class NoDialogue(ValueError):
    """A row without a user-assistant turn: a builder's output, which a recipe turns into
    dialogues, has nothing to train on."""


@dataclass(frozen=True)
class ProcessorSettings:
    """How rows become inputs.

    Attributes:
        tile_size: pixels per tile side (the vision tower's input).
        max_tiles: most tiles per image, thumbnail not counted.
        patch_size: the vision tower's patch side; with the projector's pooling it sets the
            tokens per tile.
        max_length: most tokens per sequence.
        target_side: target masks are resized so their longer side is at most this.
    """

    tile_size: int = 448
    max_tiles: int = 16
    patch_size: int = 14
    max_length: int = 4096
    target_side: int = 256


@dataclass
class Sample:
    """One row as model inputs (unbatched; `collate` packs them).

    `prompt_masks` holds the used prompt slots only, as uint8 0-255 (`collate` pads the slots
    to the batch's most and scales to [0, 1]); everything else is as the model takes it.
    """

    input_ids: Tensor
    labels: Tensor
    pixel_values: Tensor
    prompt_masks: Tensor
    image_grid: Tensor
    region_boxes: Tensor
    target_masks: Tensor
    turns_cut: int = 0


@dataclass
class _Turns:
    """Token ids and everything the turns so far refer to."""

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    slots: dict[int, int] = field(default_factory=dict)  # region index -> prompt slot
    boxes: list[int] = field(default_factory=list)  # region index per placeholder run
    targets: list[int] = field(default_factory=list)  # region index per codebook group


class RegionProcessor:
    """Turns rows in storage form into `Sample`s for `RegionForConditionalGeneration`.

    Args:
        tokenizer: the base model's tokenizer (with its chat template); markup never reaches it.
        config: the region model's config (token ids, prompt slots, pooling).
        settings: tiling, length and mask sizes.
    """

    def __init__(
        self, tokenizer: Any, config: RegionConfig, settings: ProcessorSettings | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.settings = settings or ProcessorSettings()
        side = self.settings.tile_size // self.settings.patch_size // config.projector_pooling_ratio
        self.tokens_per_tile = side * side

    def __call__(self, row: dict[str, Any]) -> Sample:
        """The row's dialogue as a training sample."""
        return self._sample(row, lambda image_ids: self._turns(row, image_ids))

    def prompt(self, row: dict[str, Any], messages: list[dict[str, str]]) -> Sample:
        """`messages` (ending with a user turn) about `row`'s image and regions, followed by
        the template's generation prompt: the input of `generate`. Nothing is labelled."""
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("a prompt ends with a user turn")

        def build(image_ids: list[int]) -> tuple[_Turns, int]:
            turns = self._build(messages, image_ids, add_generation_prompt=True)
            if turns is None or len(turns.ids) > self.settings.max_length:
                raise SampleTooLong(f"{row['id']}: the prompt does not fit the limits")
            turns.labels = [IGNORE_INDEX] * len(turns.ids)
            return turns, 0

        return self._sample(row, build)

    def _sample(
        self, row: dict[str, Any], tokens: Callable[[list[int]], tuple[_Turns, int]]
    ) -> Sample:
        """The image, its tiles and grid, and `tokens`' ids with what they refer to."""
        image = load_image(row["image"])
        width, height = row["width"], row["height"]
        settings = self.settings
        grid = choose_grid(width, height, settings.tile_size, settings.max_tiles)
        tiles = 1 + grid[0] * grid[1]
        image_ids = [self.config.image_token_id] * (tiles * self.tokens_per_tile)
        turns, cut = tokens(image_ids)
        regions = row["regions"]
        slot_regions = sorted(turns.slots, key=turns.slots.get)
        planes = [_region_mask(regions[k], height, width) for k in slot_regions]
        prompts = tile_masks(
            torch.stack(planes) if planes else torch.zeros(0, height, width),
            grid,
            settings.tile_size,
        )
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = torch.tensor([regions[k]["bbox"] for k in turns.boxes], dtype=torch.float32)
        return Sample(
            input_ids=torch.tensor(turns.ids),
            labels=torch.tensor(turns.labels),
            pixel_values=tile_image(image, grid, settings.tile_size),
            prompt_masks=prompts,
            image_grid=torch.tensor([grid[1], grid[0]]),  # the model reads (tiles_h, tiles_w)
            region_boxes=boxes.reshape(-1, 4) / scale,
            target_masks=self._targets(regions, turns.targets, height, width),
            turns_cut=cut,
        )

    def _template_chunks(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = False
    ) -> list[list[int]]:
        """The chat template's own tokens around each message: n + 1 chunks for n messages
        (the last ends with the assistant's header when `add_generation_prompt`)."""
        stand_ins = [
            {"role": m["role"], "content": _SENTINEL.format(i)} for i, m in enumerate(messages)
        ]
        text = self.tokenizer.apply_chat_template(
            stand_ins, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        pieces = _SENTINELS.split(text)
        if len(pieces) != len(messages) + 1:
            raise ValueError("the chat template must write each message's content once")
        return [self._encode(piece) for piece in pieces]

    def _turns(self, row: dict[str, Any], image_ids: list[int]) -> tuple[_Turns, int]:
        """The longest run of whole user-assistant turns within the limits (the template
        rendered for exactly those, so a cut leaves no dangling header), and how many turns
        were left out."""
        messages = row["messages"]
        pairs = len(messages) // 2
        if not pairs:
            raise NoDialogue(f"{row['id']}: no user-assistant turn in its messages")
        for kept in range(pairs, 0, -1):
            turns = self._build(messages[: 2 * kept], image_ids)
            if turns is not None and len(turns.ids) <= self.settings.max_length:
                return turns, pairs - kept
        raise SampleTooLong(
            f"{row['id']}: not even its first turn fits {self.settings.max_length} tokens and "
            f"{self.config.num_region_prompts} regions"
        )

    def _build(
        self,
        messages: list[dict[str, str]],
        image_ids: list[int],
        add_generation_prompt: bool = False,
    ) -> _Turns | None:
        """The tokens of `messages`; None when they name more regions than there are slots."""
        chunks = self._template_chunks(messages, add_generation_prompt)
        turns = _Turns(ids=list(chunks[0]), labels=[IGNORE_INDEX] * len(chunks[0]))
        for i, message in enumerate(messages):
            if not self._message(turns, message, image_ids if i == 0 else [], chunks[i + 1]):
                return None
        return turns

    def _message(
        self, turns: _Turns, message: dict[str, str], before: list[int], after: list[int]
    ) -> bool:
        """Append one message: its content (markup as ids) and the template text after it;
        an assistant's content and the first token after it (its end of turn) are labelled.
        False when it names a region beyond the prompt slots."""
        ids = list(before)
        for match_or_text in _pieces(message["content"]):
            if isinstance(match_or_text, str):
                ids += self._encode(match_or_text)
                continue
            kind, index = match_or_text
            if kind == "rej":
                ids.append(self.config.reject_token_id)
            elif kind == "region":
                slot = turns.slots.setdefault(index, len(turns.slots))
                if slot >= self.config.num_region_prompts:
                    return False
                ids.append(self.config.region_prompt_token_ids[slot])
                ids += [self.config.region_feature_token_id] * self.config.replay_tokens
                turns.boxes.append(index)
            else:
                ids += self.config.codebook_token_ids
                turns.targets.append(index)
        turns.ids += ids + after
        if message["role"] == "assistant":
            labelled = ids + after[:1]
            turns.labels += labelled + [IGNORE_INDEX] * (len(after) - len(after[:1]))
        else:
            turns.labels += [IGNORE_INDEX] * (len(ids) + len(after))
        return True

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _targets(
        self, regions: list[dict[str, Any]], targets: list[int], height: int, width: int
    ) -> Tensor:
        """Each `<segK>`'s mask, resized so its longer side is at most `target_side`."""
        scale = min(1.0, self.settings.target_side / max(height, width))
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        if not targets:
            return torch.zeros(0, *size)
        masks = []
        for k in targets:
            rle = regions[k]["mask"]
            if rle is None:
                raise ValueError(f"<seg{k}> asks for region {k}'s mask, and it has none")
            masks.append(torch.from_numpy(decode_rle(rle).astype(np.float32)))
        stacked = torch.stack(masks)[:, None]
        return (F.interpolate(stacked, size=size, mode="area")[:, 0] >= 0.5).float()


def slot_regions(messages: list[dict[str, str]]) -> list[int]:
    """The region each prompt slot holds for `messages`: regions take slots in the order
    they are first named, as the processor assigns them."""
    named = [
        piece[1]
        for message in messages
        for piece in _pieces(message["content"])
        if isinstance(piece, tuple) and piece[0] == "region"
    ]
    return list(dict.fromkeys(named))


def _pieces(content: str) -> list[str | tuple[str, int]]:
    """Content split into text and markup: `("region", 3)`, `("seg", 0)`, `("rej", -1)`."""
    pieces: list[str | tuple[str, int]] = []
    position = 0
    for match in PIECES.finditer(content):
        if match.start() > position:
            pieces.append(content[position : match.start()])
        kind = match.group(1) or "rej"
        pieces.append((kind, int(match.group(2)) if match.group(2) else -1))
        position = match.end()
    if position < len(content):
        pieces.append(content[position:])
    return pieces


def _region_mask(region: dict[str, Any], height: int, width: int) -> Tensor:
    """A region's prompt: its mask, or its box filled when it has none."""
    if region["mask"] is not None:
        return torch.from_numpy(decode_rle(region["mask"]).astype(np.float32))
    x1, y1, x2, y2 = region["bbox"]
    mask = torch.zeros(height, width)
    mask[math.floor(y1) : math.ceil(y2), math.floor(x1) : math.ceil(x2)] = 1
    return mask


def load_image(image: dict[str, Any]) -> Tensor:
    """A row's image (`{path, bytes}`) as an RGB `(3, H, W)` uint8 tensor."""
    source = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
    with Image.open(source) as opened:
        array = np.asarray(opened.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
