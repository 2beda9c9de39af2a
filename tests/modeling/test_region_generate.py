"""generate with regions in the prompt: KV cache, scripted codebook emission, masks per group."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .region_batches import EOS, SampleSpec, build_sample, collate, tiny_model

PROMPTS = [
    SampleSpec((1, 1), [(0.1, 0.2, 0.6, 0.9)]),
    SampleSpec((2, 1), [(0.0, 0.0, 1.0, 1.0), (0.5, 0.4, 1.0, 1.0)]),
]
CLOSE = {"rtol": 1e-4, "atol": 1e-5}


class ScriptedTokens(LogitsProcessor):
    """Forces the i-th generated token of row b to ``scripts[b][i]`` (EOS after the script).

    ``scripts`` is one list for every row, or one list per row.
    """

    def __init__(self, prompt_length: int, scripts: list[int] | list[list[int]]):
        self.prompt_length = prompt_length
        self.scripts = scripts

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, -float("inf"))
        for row in range(scores.shape[0]):
            script = self.scripts[row] if isinstance(self.scripts[0], list) else self.scripts
            forced[row, script[step] if step < len(script) else EOS] = 0
        return forced


def _prompt_batch(model):
    samples = []
    for index, spec in enumerate(PROMPTS):
        sample = build_sample(model.config, spec, seed=index)
        # The spec has no answer slots: drop its trailing "<text> EOS" answer.
        sample["input_ids"] = sample["input_ids"][:-2]
        samples.append(sample)
    batch = collate(samples, padding_side="left")
    for key in ("labels", "target_masks"):
        del batch[key]
    return batch


def _generate(model, batch, script, **kwargs):
    prompt_length = batch["input_ids"].shape[1]
    processors = LogitsProcessorList([ScriptedTokens(prompt_length, script)])
    return model.generate(**batch, logits_processor=processors, do_sample=False, **kwargs)


def test_generate_returns_one_mask_per_emitted_codebook_group():
    model = tiny_model()
    codebook, reject = model.config.codebook_token_ids, model.config.reject_token_id
    script = [10, *codebook, 11, reject, 12, *codebook, EOS]
    batch = _prompt_batch(model)
    out = _generate(model, batch, script, max_new_tokens=20, mask_sizes=[(8, 8), (9, 7)])
    prompt_length = batch["input_ids"].shape[1]
    assert out.sequences[:, prompt_length:].tolist() == [script, script]
    assert [m.shape for m in out.pred_masks] == [(2, 8, 8), (2, 9, 7)]
    group_starts = [prompt_length + 1, prompt_length + 1 + len(codebook) + 3]
    assert [p.tolist() for p in out.target_positions] == [group_starts, group_starts]

    # Each sample alone, unpadded, in a plain forward over its own sequence: the batched,
    # left-padded, cached generation gives the same masks (padding, positions and the batch
    # never reach a mask).
    tiles = [1 + h * w for h, w in batch["image_grids"].tolist()]
    pixels = torch.split(batch["pixel_values"], tiles)
    prompts = torch.split(batch["prompt_masks"], tiles)
    for b, (size, generated) in enumerate(zip([(8, 8), (9, 7)], out.pred_masks, strict=True)):
        real = batch["attention_mask"][b].bool()
        ids = torch.cat([batch["input_ids"][b][real], torch.tensor(script)])[None]
        alone = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": pixels[b],
            "prompt_masks": prompts[b],
            "image_grids": batch["image_grids"][b : b + 1],
            "region_boxes": [batch["region_boxes"][b]],
        }
        with torch.no_grad():
            reread = model(**alone, mask_sizes=[size])
        torch.testing.assert_close(generated, reread.pred_masks[0], **CLOSE)


def test_cached_decoding_matches_a_full_forward():
    model = tiny_model()
    codebook = model.config.codebook_token_ids
    script = [10, *codebook, 12]
    batch = _prompt_batch(model)
    out = _generate(
        model,
        batch,
        script,
        max_new_tokens=len(script),
        return_dict_in_generate=True,
        output_logits=True,
    )
    prompt_length = batch["input_ids"].shape[1]
    step_logits = torch.stack(out.generation.logits, dim=1)  # (B, steps, V), unprocessed
    full_mask = torch.cat(
        [batch["attention_mask"], torch.ones(2, len(script), dtype=torch.long)], dim=1
    )
    forward_batch = {**batch, "input_ids": out.sequences, "attention_mask": full_mask}
    with torch.no_grad():
        full = model(**forward_batch).logits
    positions = slice(prompt_length - 1, prompt_length - 1 + len(script))
    torch.testing.assert_close(step_logits, full[:, positions], **CLOSE)


def test_group_cut_off_by_the_length_limit_and_rejections_give_no_mask():
    model = tiny_model()
    codebook, reject = model.config.codebook_token_ids, model.config.reject_token_id
    batch = _prompt_batch(model)
    cut = _generate(model, batch, [10, *codebook], max_new_tokens=len(codebook))
    assert [m.shape[0] for m in cut.pred_masks] == [0, 0]
    rejected = _generate(model, batch, [10, reject, EOS], max_new_tokens=5)
    assert [m.shape[0] for m in rejected.pred_masks] == [0, 0]


def test_rows_that_stop_early_get_no_masks_while_others_continue():
    model = tiny_model()
    codebook = model.config.codebook_token_ids
    batch = _prompt_batch(model)
    out = _generate(model, batch, [[EOS], [10, *codebook, EOS]], max_new_tokens=8)
    prompt_length = batch["input_ids"].shape[1]
    assert out.sequences[0, prompt_length:].tolist() == [EOS] + [0] * (len(codebook) + 1)
    assert [m.shape[0] for m in out.pred_masks] == [0, 1]


def test_generate_without_images_returns_sequences_only():
    model = tiny_model()
    batch = _prompt_batch(model)
    out = model.generate(input_ids=torch.tensor([[1, 5, 6]]), max_new_tokens=3, do_sample=False)
    assert out.sequences.shape == (1, 6) and out.pred_masks is None
    with pytest.raises(ValueError, match="num_beams=2"):
        model.generate(**batch, num_beams=2, max_new_tokens=2)
