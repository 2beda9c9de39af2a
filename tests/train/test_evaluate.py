"""Evaluation by generation: the prompt the model sees, the masks, rejections and words read
off its answer, and each kind of question scored by its metric, with the model's tokens (or
its whole answers) scripted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList

from regionkit.catalog.masks import encode_mask
from regionkit.catalog.records import make_region, make_row
from regionkit.cli import main
from regionkit.modeling import tiny_region_config
from regionkit.train import evaluate as evaluation
from regionkit.train.evaluate import JudgeCase, ModelAnswer, answer, evaluate
from regionkit.train.processor import ProcessorSettings, RegionProcessor
from regionkit.train.tiny_tokenizer import tiny_tokenizer
from tests.modeling.region_batches import tiny_model
from tests.train.datasets import write_split

SETTINGS = ProcessorSettings(tile_size=56, max_tiles=4, patch_size=14)


class Script(LogitsProcessor):
    """Forces the answer to each prompt in turn: prompt n gets `scripts[n]`, then `</s>`."""

    def __init__(self, scripts: list[list[int]], eos: int) -> None:
        self.scripts, self.eos, self.prompt, self.start = scripts, eos, -1, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.start == 0 or input_ids.shape[1] <= self.start:  # a new prompt
            self.prompt, self.start = self.prompt + 1, input_ids.shape[1]
        step = input_ids.shape[1] - self.start
        script = self.scripts[self.prompt]
        forced = torch.full_like(scores, -float("inf"))
        forced[:, script[step] if step < len(script) else self.eos] = 0
        return forced


def _row(folder: Path) -> dict:
    Image.new("RGB", (112, 56), (80, 120, 160)).save(folder / "1.png")
    mask = np.zeros((56, 112), np.uint8, order="F")
    mask[10:40, 20:60] = 1
    region = make_region("0", [20, 10, 60, 40], encode_mask(mask), "dog")
    groundings = [
        {"text": "the dog", "regions": [0]},
        {"text": "the unicorn", "regions": []},
        {"text": "the brown dog", "regions": [0]},
    ]
    return make_row(
        source="grefcoco", split="val", native_key="1", image_path=str(folder / "1.png"),
        width=112, height=56, builder="grefcoco", builder_version="1", source_files=[],
        regions=[region], groundings=groundings,
    )  # fmt: skip


def test_the_prompt_ends_with_the_assistants_header_and_nothing_is_labelled(tmp_path):
    processor = RegionProcessor(tiny_tokenizer(), tiny_region_config(), SETTINGS)
    sample = processor.prompt(_row(tmp_path), [{"role": "user", "content": "segment the dog ."}])
    tokenizer = processor.tokenizer
    assert sample.input_ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert (sample.labels == -100).all() and len(sample.target_masks) == 0


def test_referring_scores_read_masks_and_rejections_off_the_answers(tmp_path):
    model = tiny_model()
    config = model.config
    processor = RegionProcessor(tiny_tokenizer(), config, SETTINGS)
    group, reject, eos = config.codebook_token_ids, config.reject_token_id, 2
    row = _row(tmp_path)
    # "the dog": a mask; "the unicorn": rejected (correct); "the brown dog": rejected (wrong)
    script = Script([[*group], [reject], [reject]], eos)
    generate = {"logits_processor": LogitsProcessorList([script]), "max_new_tokens": 8}
    result = evaluate(model, processor, [row], **generate).result()["refer"]
    assert result["samples"] == 3
    assert result["N-acc"] == 1.0  # the no-target text was rejected
    assert result["T-acc"] == 0.5  # one of two target texts answered with a mask

    single = Script([[*group, *group]], eos)
    reply = answer(
        model,
        processor,
        row,
        "segment the dog .",
        logits_processor=LogitsProcessorList([single]),
        max_new_tokens=12,
    )
    assert len(reply.masks) == 2 and reply.masks[0].shape == (56, 112) and not reply.rejected


def saved_model_and_split(tmp_path: Path, row: dict) -> tuple[Path, Path]:
    """A saved tiny model with its tokenizer, and a dataset whose `val` split is `row`."""
    model_dir, data = tmp_path / "model", tmp_path / "data"
    tiny_model().save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    return model_dir, write_split(data, [row], split="val")


def test_regionkit_eval_scores_a_saved_model_on_a_built_split(tmp_path, capsys):
    model_dir, data = saved_model_and_split(tmp_path, _row(tmp_path))
    out = tmp_path / "results.json"
    command = ["eval", "--model", str(model_dir), "--data", str(data), "--max-new-tokens", "6"]
    assert main([*command, "--out", str(out)]) == 0
    results = json.loads(out.read_text())["data:val:refer"]
    assert results["samples"] == 3 and 0 <= results["gIoU"] <= 1
    assert "data:val:refer" in capsys.readouterr().out
    assert main([*command, "--split", "test"]) == 2


def _mask(box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((56, 112), bool)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = True
    return mask


def _dialogue_row(folder: Path) -> dict:
    """Two regions with masks and a dialogue of every kind of turn."""
    row = _row(folder)
    boxes = [(20, 10, 60, 40), (70, 5, 100, 50)]
    regions = []
    for n, box in enumerate(boxes):
        regions.append(make_region(str(n), list(box), encode_mask(_mask(box))))
    turns = [
        ("segment the dog and the cat .", "<seg0> and <seg1>"),
        ("segment the unicorn .", "<rej>"),
        ("Which is true?\nA. <region0> is left of <region1>\nB. <region0> is right of "
         "<region1>\nAnswer with the letter.", "A"),
        ("describe <region1> .", "a cat sits on the chair"),
    ]  # fmt: skip
    messages = [
        {"role": role, "content": text}
        for asked, answered in turns
        for role, text in (("user", asked), ("assistant", answered))
    ]
    return {**row, "regions": regions, "messages": messages}


def test_each_kind_of_question_is_scored_by_its_metric(tmp_path, monkeypatch):
    row = _dialogue_row(tmp_path)
    cat, dog = _mask((70, 5, 100, 50)), _mask((20, 10, 60, 40))
    half_dog = _mask((20, 10, 40, 40))
    replies = {  # the cat and half the dog, in the other order; a wrong mask for the unicorn
        "segment the dog and the cat .": ModelAnswer([], [cat, half_dog], False),
        "segment the unicorn .": ModelAnswer([], [dog], False),
        row["messages"][4]["content"]: ModelAnswer([], [], False, "I think B"),
        "describe <region1> .": ModelAnswer([], [], False, "a cat"),
    }
    monkeypatch.setattr(
        evaluation, "answer", lambda model, processor, row, question, **_: replies[question]
    )
    judged: list[JudgeCase] = []

    def judge(cases: list[JudgeCase]) -> list[float | None]:
        judged.extend(cases)
        return [0.75 for _ in cases]

    result = evaluate(None, None, [row]).result(judge)
    segment = result["segment"]
    assert segment["samples"] == 2
    # matched: the cat 1.0, the dog 0.5, over max(2, 2) = 2; the unicorn's false mask 0
    assert segment["matched_gIoU"] == pytest.approx(((1 + 0.5) / 2 + 0) / 2)
    # union: (cat + half dog) against (cat + dog); the unicorn's false positive scores 0
    union_iou = (cat.sum() + half_dog.sum()) / (cat.sum() + dog.sum())
    assert segment["gIoU"] == pytest.approx((union_iou + 0) / 2)
    assert segment["N-acc"] == 0.0 and segment["T-acc"] == 1.0
    assert result["choice"] == {"accuracy": 0.0, "samples": 1}  # it chose B; A was right
    assert judged == [JudgeCase("describe <region1> .", "a cat sits on the chair", "a cat")]
    assert result["caption"] == {"judge": 0.75, "samples": 1, "unjudged": 0}
    assert "caption" not in evaluate(None, None, [row]).result()  # no judge, no score
    only = evaluate(None, None, [row], kinds=["choice"]).result()
    assert list(only) == ["choice"]


def test_a_choice_is_read_off_the_generated_words(tmp_path):
    model = tiny_model()
    processor = RegionProcessor(tiny_tokenizer(), model.config, SETTINGS)
    row = _dialogue_row(tmp_path)
    letter = processor.tokenizer.convert_tokens_to_ids("A")
    script = Script([[letter]], eos=2)
    generate = {"logits_processor": LogitsProcessorList([script]), "max_new_tokens": 3}
    result = evaluate(model, processor, [row], kinds=["choice"], **generate).result()
    assert result["choice"] == {"accuracy": 1.0, "samples": 1}


def test_an_answers_region_tokens_are_written_back_as_the_questions_regions(tmp_path):
    model = tiny_model()
    processor = RegionProcessor(tiny_tokenizer(), model.config, SETTINGS)
    words = processor.tokenizer.convert_tokens_to_ids
    prompts = model.config.region_prompt_token_ids
    # the question names region 1 first, so it holds slot 0, and region 0 slot 1
    script = Script([[words("the"), prompts[0], words("and"), prompts[1], words("sit")]], eos=2)
    generate = {"logits_processor": LogitsProcessorList([script]), "max_new_tokens": 6}
    question = "describe <region1> and <region0> ."
    reply = answer(model, processor, _dialogue_row(tmp_path), question, **generate)
    assert reply.text == "the <region1> and <region0> sit"
