"""The training loop: streamed rows, accumulated micro-batches, AdamW with warmup and cosine
decay, clipping, logs, and checkpoints a rerun resumes from with the same next batch.

The loop is the same for one plain process and for many under a launcher; an engine
(`engine.py`) runs the model. Each process streams its own share of the rows; the counts a
window's losses are divided by are summed over every process, so the update is that of the
whole batch. At the end the model and its tokenizer are saved under `out/model` for
`from_pretrained` and `regionkit eval`. A checkpoint holds the model, the optimizer, the
schedule, every random generator and the stream's position (epoch and the batches taken in
it); a rerun with the same config finds it and takes exactly the batches an uninterrupted run
would have taken next.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, astuple, dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from regionkit.modeling import RegionForConditionalGeneration, tiny_region_config
from regionkit.train.accumulate import WindowCounts, micro_batch_loss, window_counts
from regionkit.train.checkpoint import load_region_model
from regionkit.train.collate import collate
from regionkit.train.config import TrainConfig
from regionkit.train.engine import build_engine
from regionkit.train.lora import add_lora, merge_lora
from regionkit.train.processor import (
    NoDialogue,
    ProcessorSettings,
    RegionProcessor,
    Sample,
    SampleTooLong,
)
from regionkit.train.stream import RowStream, StreamSource
from regionkit.train.tiny_tokenizer import tiny_tokenizer

LOG = "log.jsonl"
MODEL = "model"
"""The finished model and its tokenizer, under `out`."""


@dataclass
class Position:
    """Where training stands: optimizer steps done, and the stream's epoch and batches taken."""

    step: int = 0
    epoch: int = 0
    batches: int = 0


def build_model(
    config: TrainConfig,
) -> tuple[RegionForConditionalGeneration, Any, ProcessorSettings]:
    """The model, its tokenizer and the processor settings the config names."""
    torch.manual_seed(config.seed)
    if config.model == "tiny":
        model = RegionForConditionalGeneration(tiny_region_config())
        settings = ProcessorSettings(56, config.max_tiles, 14, config.max_length)
        return model, tiny_tokenizer(), settings
    model, tokenizer = load_region_model(config.model)
    settings = ProcessorSettings(
        config.tile_size, config.max_tiles, config.patch_size, config.max_length
    )
    return model, tokenizer, settings


def _freeze(model: RegionForConditionalGeneration, parts: list[str]) -> None:
    modules = {
        "vision_tower": model.model.vision_tower,
        "language_model": model.model.language_model,
        "projector": model.model.multi_modal_projector,
    }
    for part in parts:
        modules[part].requires_grad_(False)


class _Processed:
    """The processor as a stream transform: a row it cannot use becomes the reason why."""

    def __init__(self, processor: RegionProcessor) -> None:
        self.processor = processor

    def __call__(self, row: dict[str, Any]) -> Sample | str:
        try:
            return self.processor(row)
        except SampleTooLong:
            return "too_long"
        except NoDialogue:
            return "no_dialogue"


class _Collated(NamedTuple):
    """A micro-batch of the rows that could be used (None when none could), and what became
    of the rest: rows dropped by reason, turns cut."""

    batch: dict[str, Any] | None
    dropped: Counter[str]
    turns_cut: int


def _collate_kept(samples: list[Sample | str], pad_token_id: int) -> _Collated:
    kept = [s for s in samples if isinstance(s, Sample)]
    dropped = Counter(s for s in samples if isinstance(s, str))
    batch = collate(kept, pad_token_id=pad_token_id, padding_side="right") if kept else None
    return _Collated(batch, dropped, sum(s.turns_cut for s in kept))


def train(
    config: TrainConfig,
    log: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run (or resume) the training `config` describes; the log records of the steps run.
    `log` gets every `log_every`-th record; `progress` shows a bar of steps (rank 0 only)."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer, settings = build_model(config)
    if config.lora is not None:
        add_lora(model, config.lora)
    _freeze(model, config.freeze)
    model.train()
    engine = build_engine(model, config)
    loop = engine.load(out)
    position = Position(**loop) if loop else Position()
    processor = RegionProcessor(tokenizer, model.config, settings)
    sources = [StreamSource(Path(d.path), d.weight, d.split) for d in config.data]
    stream = RowStream(
        sources,
        seed=config.seed,
        rank=engine.where.rank,
        world_size=engine.where.world_size,
        buffer_size=256,
        transform=_Processed(processor),
    )
    unused: Counter[str] = Counter()  # rows dropped and turns cut since the last step
    batches = _batches(stream, config, position, tokenizer.pad_token_id or 0, unused)
    main = engine.where.is_main
    records = []
    bar = tqdm(
        total=config.steps, initial=position.step, unit="step", disable=not (progress and main)
    )
    while position.step < config.steps:
        started = time.perf_counter()
        window = [_to(next(batches), engine.device) for _ in range(config.accumulation)]
        own = window_counts(window, model.config)
        counts = WindowCounts(*map(int, engine.all_sum(list(astuple(own)))))
        loss_sum, parts_sum = 0.0, {}
        for batch in window:
            loss, parts = micro_batch_loss(engine.forward, model.config, batch, counts)
            engine.backward(loss)
            loss_sum += loss.item()
            for name, value in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + value.item()
        grad_norm = engine.step()
        position.step += 1
        names = sorted(parts_sum)
        summed = engine.all_sum([loss_sum, *(parts_sum[n] for n in names)])
        left_out = dict(
            zip(UNUSED, map(int, engine.all_sum([unused[k] for k in UNUSED])), strict=True)
        )
        unused.clear()
        seconds = time.perf_counter() - started
        record = {
            "step": position.step,
            "loss": summed[0],
            "parts": dict(zip(names, summed[1:], strict=True)),
            "lr": engine.learning_rate(),
            "grad_norm": grad_norm,
            "samples": counts.rows,
            "samples_per_s": counts.rows / seconds,
            "tokens_per_s": counts.inputs / seconds,
            **left_out,
        }
        records.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.1e}")
        if main:
            with open(out / LOG, "a") as file:
                file.write(json.dumps(record) + "\n")
            if log is not None and (
                position.step % config.log_every == 0 or position.step == config.steps
            ):
                log(record)
        if position.step % config.save_every == 0 or position.step == config.steps:
            engine.save(out, asdict(position))
    bar.close()
    # the trained model as `from_pretrained` and `regionkit eval` read it; also when a run
    # killed after its last checkpoint is started again and has no step left to take
    if records or not (out / MODEL / "config.json").exists():
        if config.lora is not None:
            merge_lora(model)
        engine.save_model(out / MODEL, tokenizer)
    return records


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch on `device` (its per-sample mask lists too)."""
    if device.type == "cpu":
        return batch
    return {
        k: v.to(device, non_blocking=True)
        if torch.is_tensor(v)
        else [t.to(device, non_blocking=True) for t in v]
        if isinstance(v, list) and v and torch.is_tensor(v[0])
        else v
        for k, v in batch.items()
    }


UNUSED = ("too_long", "no_dialogue", "turns_cut")
"""What a step's log counts of the rows it could not use whole: rows too long even cut to their
first turn, rows without a dialogue, and turns cut from rows kept."""


def _batches(
    stream: RowStream, config: TrainConfig, position: Position, pad: int, unused: Counter[str]
) -> Iterator[dict[str, Any]]:
    """Micro-batches for ever, epoch after epoch, counting the stream's position as it goes
    and in `unused` the rows dropped and turns cut."""
    skip = position.batches
    while True:
        stream.set_epoch(position.epoch, skip_batches=skip, batch_size=config.micro_batch_size)
        loader = DataLoader(
            stream,
            batch_size=config.micro_batch_size,
            num_workers=config.num_workers,
            collate_fn=partial(_collate_kept, pad_token_id=pad),
        )
        produced, dropped = 0, Counter[str]()
        for collated in loader:
            position.batches += 1
            dropped.update(collated.dropped)
            unused.update(collated.dropped)
            unused["turns_cut"] += collated.turns_cut
            if collated.batch is not None:
                produced += 1
                yield collated.batch
        if produced == 0 and skip == 0:
            raise ValueError(_no_rows_message(stream, config, dropped))
        position.epoch, position.batches, skip = position.epoch + 1, 0, 0


def _no_rows_message(stream: RowStream, config: TrainConfig, dropped: Counter[str]) -> str:
    """Why an epoch gave a rank nothing to train on."""
    where = f"rank {stream.rank} of {stream.world_size}: no row of epoch {stream.epoch} to train on"
    if not dropped:
        return (
            f"{where}: its readers got no rows (the datasets have fewer row groups than "
            "ranks and workers have readers, or the split is empty)"
        )
    reasons = []
    if dropped["too_long"]:
        reasons.append(
            f"{dropped['too_long']} rows longer than max_length {config.max_length} (or naming "
            "more regions than the prompt slots) even cut to their first turn"
        )
    if dropped["no_dialogue"]:
        reasons.append(
            f"{dropped['no_dialogue']} rows without a dialogue: a builder's output; train on a "
            "recipe's (`regionkit recipe seed ...`)"
        )
    return f"{where}: {'; '.join(reasons)}"
