"""Scoring a region model on a dataset's rows by letting it answer, as a user would ask.

Each question (`questions.py`) is put to the model alone as a generation prompt (the
processor's `prompt`), its answer generated with masks decoded at the image's size, and the
masks and rejection read off the answer: a codebook group is a predicted mask, `<|reject|>`
says the thing is absent. Then, by the question's kind:

- `refer` and `segment`: the gRefCOCO metrics over the union of the masks (gIoU, cIoU, N-acc,
  T-acc); `segment` adds the MUSE-style scores of masks matched one to one to the targets
  (`matched_gIoU`, `matched_cIoU`).
- `choice`: the share of answers that pick the right letter.
- `caption`: the mean of an LLM judge's scores of the answer against the reference, in [0, 1];
  skipped without a judge.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from regionkit.catalog.masks import decode_rle
from regionkit.modeling import RegionForConditionalGeneration
from regionkit.train.collate import collate
from regionkit.train.metrics import GresScores, MatchedScores, Metrics, choice_accuracy, share
from regionkit.train.processor import ProcessorSettings, RegionProcessor, slot_regions
from regionkit.train.questions import Question, chosen_letter, questions


@dataclass
class ModelAnswer:
    """What the model generated for one question.

    Attributes:
        tokens: the generated ids.
        masks: one boolean `(height, width)` mask per complete codebook group, in order.
        rejected: whether the answer holds the reject token.
        text: the answer's words.
    """

    tokens: list[int]
    masks: list[np.ndarray]
    rejected: bool
    text: str = ""


@torch.no_grad()
def answer(
    model: RegionForConditionalGeneration,
    processor: RegionProcessor,
    row: dict[str, Any],
    question: str,
    **generate: Any,
) -> ModelAnswer:
    """The model's answer to `question` about `row`'s image (`generate` is passed on)."""
    sample = processor.prompt(row, [{"role": "user", "content": question}])
    pad = processor.tokenizer.pad_token_id or 0
    batch = collate([sample], pad_token_id=pad)
    del batch["labels"], batch["target_masks"]
    out = model.generate(**batch, mask_sizes=[(row["height"], row["width"])], **generate)
    tokens = out.sequences[0, batch["input_ids"].shape[1] :].tolist()
    masks = [(logits > 0).cpu().numpy() for logits in out.pred_masks[0]]
    regions = slot_regions([{"role": "user", "content": question}])
    text = answer_text(tokens, regions, model.config, processor.tokenizer)
    return ModelAnswer(tokens, masks, model.config.reject_token_id in tokens, text)


def answer_text(tokens: list[int], regions: list[int], config: Any, tokenizer: Any) -> str:
    """The answer's words, with each region prompt token written back as the `<regionK>` its
    slot held in the question (so a judge can hold it against the reference's markup)."""
    slot_of = {token: slot for slot, token in enumerate(config.region_prompt_token_ids)}
    pieces: list[str] = []
    run: list[int] = []
    for token in [*tokens, None]:
        if token is not None and token not in slot_of:
            run.append(token)
            continue
        pieces.append(tokenizer.decode(run, skip_special_tokens=True).strip())
        run = []
        if token is not None:
            slot = slot_of[token]
            pieces.append(f"<region{regions[slot]}>" if slot < len(regions) else "")
    return " ".join(piece for piece in pieces if piece)


@dataclass(frozen=True)
class JudgeCase:
    """What a judge sees of one free-text answer."""

    question: str
    reference: str
    answer: str


Judge = Callable[[list[JudgeCase]], list[float | None]]
"""Scores in [0, 1] for a batch of cases, None where no verdict came."""


@dataclass
class Scores:
    """Running totals of every kind of question; `result` gives the metrics by kind."""

    refer: GresScores = field(default_factory=GresScores)
    segment: GresScores = field(default_factory=GresScores)
    matched: MatchedScores = field(default_factory=MatchedScores)
    chosen: list[str] = field(default_factory=list)
    correct: list[str] = field(default_factory=list)
    cases: list[JudgeCase] = field(default_factory=list)
    skipped: int = 0
    """Questions whose targets include a box-only region: no mask to score against."""

    def result(self, judge: Judge | None = None) -> dict[str, Metrics]:
        results: dict[str, Metrics] = {}
        if self.refer.samples:
            results["refer"] = self.refer.result()
        if self.segment.samples:
            matched = self.matched.result()
            results["segment"] = self.segment.result() | {
                "matched_gIoU": matched["gIoU"],
                "matched_cIoU": matched["cIoU"],
            }
        if self.correct:
            results["choice"] = {
                "accuracy": choice_accuracy(self.chosen, self.correct),
                "samples": len(self.correct),
            }
        if self.cases and judge is not None:
            verdicts = judge(self.cases)
            judged = [v for v in verdicts if v is not None]
            results["caption"] = {
                "judge": share(sum(judged), len(judged)),
                "samples": len(judged),
                "unjudged": len(verdicts) - len(judged),
            }
        return results


def evaluate(
    model: RegionForConditionalGeneration,
    processor: RegionProcessor,
    rows: Iterable[dict[str, Any]],
    kinds: Iterable[str] = ("refer", "segment", "choice", "caption"),
    **generate: Any,
) -> Scores:
    """Put every question of `kinds` in `rows` to the model; the totals to score them by."""
    wanted = set(kinds)
    scores = Scores()
    for row in rows:
        for question in questions(row):
            if question.kind in wanted:
                _score(model, processor, row, question, scores, generate)
    return scores


def _score(
    model: RegionForConditionalGeneration,
    processor: RegionProcessor,
    row: dict[str, Any],
    question: Question,
    scores: Scores,
    generate: dict[str, Any],
) -> None:
    truth: list[np.ndarray] = []
    if question.kind in ("refer", "segment"):
        regions = [row["regions"][k] for k in question.targets]
        if any(region["mask"] is None for region in regions):
            scores.skipped += 1
            return
        truth = [decode_rle(region["mask"]).astype(bool) for region in regions]
    reply = answer(model, processor, row, question.text, **generate)
    shape = (row["height"], row["width"])
    if question.kind == "refer":
        scores.refer.add(reply.masks, truth, shape)
    elif question.kind == "segment":
        scores.segment.add(reply.masks, truth, shape)
        scores.matched.add(reply.masks, truth, shape)
    elif question.kind == "choice":
        scores.chosen.append(chosen_letter(reply.text, question.options) or "")
        scores.correct.append(question.answer)
    else:
        scores.cases.append(JudgeCase(question.text, question.answer, reply.text))


def dataset_rows(folder: Path, split: str) -> Iterator[dict[str, Any]]:
    """A built dataset's rows of `split`, shard by shard."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    if split not in manifest["splits"]:
        raise ValueError(f"{folder}: no split {split!r}; it has {sorted(manifest['splits'])}")
    for shard in manifest["splits"][split]["shards"]:
        yield from pq.read_table(Path(folder) / shard["file"]).to_pylist()


def processor_for(
    model: RegionForConditionalGeneration, tokenizer: Any, max_tiles: int
) -> RegionProcessor:
    """A processor with the model's own tile size and patch size."""
    patch_embed = model.model.vision_tower.timm_model.patch_embed
    settings = ProcessorSettings(
        tile_size=int(patch_embed.img_size[0]),
        max_tiles=max_tiles,
        patch_size=int(patch_embed.patch_size[0]),
        max_length=model.config.text_config.max_position_embeddings,
    )
    return RegionProcessor(tokenizer, model.config, settings)


def format_results(results: dict[str, Metrics]) -> str:
    """Results as a table: one line per dataset and split (n/a: a share of nothing)."""
    names = sorted({name for metrics in results.values() for name in metrics})
    lines = [f"{'dataset':40} " + " ".join(f"{name:>8}" for name in names)]
    for where, metrics in results.items():
        cells = [_cell(metrics, name) for name in names]
        lines.append(f"{where:40} " + " ".join(cells))
    return "\n".join(lines)


def _cell(metrics: Metrics, name: str) -> str:
    value = metrics.get(name, "")
    if value is None:
        return f"{'n/a':>8}"
    return f"{value:>8.4f}" if isinstance(value, float) else f"{value:>8}"
