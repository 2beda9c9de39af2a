"""The training loop: streamed rows, accumulated micro-batches, AdamW with warmup and cosine
decay, clipping, logs, and checkpoints a rerun resumes from with the same next batch.

One plain process (no launcher), on whatever device torch picks. At the end the model and its
tokenizer are saved under `out/model` for `from_pretrained` and `regionkit eval`. A checkpoint
holds the model, the optimizer, the schedule, every random generator and the stream's position
(epoch and the batches taken in it), written whole by rename; a rerun with the same config
finds it and goes on, taking exactly the batches an uninterrupted run would have taken next.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from regionkit.modeling import RegionForConditionalGeneration, tiny_region_config
from regionkit.train.accumulate import micro_batch_loss, window_counts
from regionkit.train.checkpoint import load_region_model
from regionkit.train.collate import collate
from regionkit.train.config import TrainConfig
from regionkit.train.processor import ProcessorSettings, RegionProcessor, Sample, SampleTooLong
from regionkit.train.stream import RowStream, StreamSource
from regionkit.train.tiny_tokenizer import tiny_tokenizer

CHECKPOINT = "checkpoint.pt"
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
    """The processor as a stream transform: a row too long for the limits becomes None."""

    def __init__(self, processor: RegionProcessor) -> None:
        self.processor = processor

    def __call__(self, row: dict[str, Any]) -> Sample | None:
        try:
            return self.processor(row)
        except SampleTooLong:
            return None


def _collate_kept(samples: list[Sample | None], pad_token_id: int) -> dict[str, Any] | None:
    kept = [s for s in samples if s is not None]
    return collate(kept, pad_token_id=pad_token_id, padding_side="right") if kept else None


def learning_rate_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(
    config: TrainConfig,
    log: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run (or resume) the training `config` describes; the log records of the steps run.
    `log` gets every `log_every`-th record; `progress` shows a bar of steps."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer, settings = build_model(config)
    _freeze(model, config.freeze)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(learning_rate_factor, warmup=config.warmup_steps, total=config.steps)
    )
    position = Position()
    if (out / CHECKPOINT).exists():
        position = _restore(out / CHECKPOINT, model, optimizer, schedule)
        # the restored learning rate followed the schedule of the run that saved it, which may
        # have planned fewer steps: go on with this run's schedule from the same step
        factor = learning_rate_factor(position.step, config.warmup_steps, config.steps)
        for group, base in zip(optimizer.param_groups, schedule.base_lrs, strict=True):
            group["lr"] = base * factor
    processor = RegionProcessor(tokenizer, model.config, settings)
    sources = [StreamSource(Path(d.path), d.weight, d.split) for d in config.data]
    stream = RowStream(sources, seed=config.seed, buffer_size=256, transform=_Processed(processor))
    pad = tokenizer.pad_token_id or 0
    batches = _batches(stream, config, position, pad)
    records = []
    bar = tqdm(total=config.steps, initial=position.step, unit="step", disable=not progress)
    while position.step < config.steps:
        started = time.perf_counter()
        window = [next(batches) for _ in range(config.accumulation)]
        counts = window_counts(window, model.config)
        loss_sum, parts_sum = 0.0, {}
        for batch in window:
            loss, parts = micro_batch_loss(model, batch, counts)
            loss.backward()
            loss_sum += loss.item()
            for name, value in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + value.item() / len(window)
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        position.step += 1
        seconds = time.perf_counter() - started
        rows = sum(len(batch["target_masks"]) for batch in window)
        record = {
            "step": position.step,
            "loss": loss_sum,
            "parts": parts_sum,
            "lr": schedule.get_last_lr()[0],
            "samples_per_s": rows / seconds,
            "tokens_per_s": counts.tokens / seconds,
        }
        records.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.4f}", lr=f"{record['lr']:.1e}")
        with open(out / LOG, "a") as file:
            file.write(json.dumps(record) + "\n")
        if log is not None and (
            position.step % config.log_every == 0 or position.step == config.steps
        ):
            log(record)
        if position.step % config.save_every == 0 or position.step == config.steps:
            _save(out / CHECKPOINT, model, optimizer, schedule, position, config)
    bar.close()
    if records:  # the trained model as `from_pretrained` and `regionkit eval` read it
        model.save_pretrained(out / MODEL)
        tokenizer.save_pretrained(out / MODEL)
    return records


def _batches(
    stream: RowStream, config: TrainConfig, position: Position, pad: int
) -> Iterator[dict[str, Any]]:
    """Micro-batches for ever, epoch after epoch, counting the stream's position as it goes."""
    skip = position.batches
    while True:
        stream.set_epoch(position.epoch, skip_batches=skip, batch_size=config.micro_batch_size)
        loader = DataLoader(
            stream,
            batch_size=config.micro_batch_size,
            num_workers=config.num_workers,
            collate_fn=partial(_collate_kept, pad_token_id=pad),
        )
        produced = 0
        for batch in loader:
            position.batches += 1
            if batch is not None:
                produced += 1
                yield batch
        if produced == 0 and skip == 0:
            raise ValueError("the datasets give no row that fits the limits")
        position.epoch, position.batches, skip = position.epoch + 1, 0, 0


def _save(
    path: Path, model: Any, optimizer: Any, schedule: Any, position: Position, config: TrainConfig
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "position": asdict(position),
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
        },
        "config": asdict(config),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _restore(path: Path, model: Any, optimizer: Any, schedule: Any) -> Position:
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    return Position(**state["position"])
