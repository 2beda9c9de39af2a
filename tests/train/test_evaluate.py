"""Evaluation by generation: the prompt the model sees, the masks and rejections read off its
answer, and the gRefCOCO metrics over them, with the model's tokens scripted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from pycocotools import mask as mask_api
from transformers import LogitsProcessor, LogitsProcessorList

from regionkit.catalog.records import make_region, make_row
from regionkit.catalog.schema import ARROW_SCHEMA
from regionkit.cli import main
from regionkit.modeling import tiny_region_config
from regionkit.train.evaluate import answer, evaluate_referring
from regionkit.train.processor import ProcessorSettings, RegionProcessor
from regionkit.train.tiny_tokenizer import tiny_tokenizer
from tests.modeling.region_batches import tiny_model

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
    rle = mask_api.encode(mask)
    region = make_region("0", [20, 10, 60, 40], {**rle, "counts": rle["counts"].decode()}, "dog")
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
    result = evaluate_referring(model, processor, [row], **generate).result()
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


def test_regionkit_eval_scores_a_saved_model_on_a_built_split(tmp_path, capsys):
    model_dir, data = tmp_path / "model", tmp_path / "data"
    tiny_model().save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    (data / "data").mkdir(parents=True)
    row = _row(tmp_path)
    pq.write_table(pa.Table.from_pylist([row], schema=ARROW_SCHEMA), data / "data/val.parquet")
    shards = [{"file": "data/val.parquet", "rows": 1}]
    (data / "manifest.json").write_text(
        json.dumps({"splits": {"val": {"rows": 1, "shards": shards}}})
    )
    out = tmp_path / "results.json"
    command = ["eval", "--model", str(model_dir), "--data", str(data), "--max-new-tokens", "6"]
    assert main([*command, "--out", str(out)]) == 0
    results = json.loads(out.read_text())["data:val"]
    assert results["samples"] == 3 and 0 <= results["gIoU"] <= 1
    assert "data:val" in capsys.readouterr().out
    assert main([*command, "--split", "test"]) == 2
