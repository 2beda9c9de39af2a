"""What the training loop asks of the machinery that runs the model: a forward pass, backward,
the update, sums across processes, and checkpoints. Two engines answer it: `TorchEngine`, one
plain process with torch's AdamW, and `DeepSpeedEngine`, the model under
`deepspeed.initialize` (ZeRO, offload, any number of processes).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from regionkit.modeling import RegionForConditionalGeneration
from regionkit.train.config import ConfigError, TrainConfig
from regionkit.train.distributed import Placement, device_for, placement
from regionkit.train.optimization import adamw, continue_schedule, schedule

TORCH_CHECKPOINT = "checkpoint.pt"
DEEPSPEED_CHECKPOINTS = "checkpoints"


class Engine(Protocol):
    """The model as the training loop drives it."""

    model: RegionForConditionalGeneration
    """The model itself, unwrapped: its config, its generation, its weights."""
    where: Placement
    device: torch.device

    def forward(self, batch: dict[str, Any], **kwargs: Any) -> Any:
        """The model's outputs for one micro-batch."""

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of one micro-batch's loss, added to those of the window so far."""

    def step(self) -> float | None:
        """Clip, update and move the schedule on, at the end of an accumulation window; the
        gradients' norm before clipping (None where the engine does not measure it)."""

    def learning_rate(self) -> float:
        """The rate the next update uses."""

    def all_sum(self, values: list[float]) -> list[float]:
        """`values` summed over every process."""

    def save(self, out: Path, state: dict[str, Any]) -> None:
        """A checkpoint under `out` with the loop's own `state`, replacing the last one."""

    def load(self, out: Path) -> dict[str, Any] | None:
        """The last checkpoint under `out` restored, and its loop state; None when none."""

    def save_model(self, folder: Path, tokenizer: Any) -> None:
        """The trained model and tokenizer for `from_pretrained`, written by rank 0."""


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` a file beside `path`, then rename it into place: readers see all or nothing."""
    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(partial)
    os.replace(partial, path)


def random_state() -> dict[str, Any]:
    """Every generator a step may draw from, to restore on resume."""
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    """bf16 when asked, or by default on a GPU that has it; fp32 on the CPU."""
    if config.precision == "bf16":
        return True
    if config.precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return False


class TorchEngine:
    """One plain process: torch's AdamW over the trainable weights, bf16 autocast on a GPU,
    a checkpoint file written whole by rename."""

    def __init__(self, model: RegionForConditionalGeneration, config: TrainConfig) -> None:
        self.where = placement()
        if self.where.world_size > 1:
            raise ConfigError(
                f"engine 'torch' runs one process, but the launcher started "
                f"{self.where.world_size}: set engine: deepspeed to train on several"
            )
        self.device = device_for(self.where)
        self.model = model.to(self.device)
        self.config = config
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = adamw(self.trainable, config)
        self.schedule = schedule(self.optimizer, config)
        self.bf16 = use_bf16(config, self.device)

    def forward(self, batch: dict[str, Any], **kwargs: Any) -> Any:
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.bf16
            else contextlib.nullcontext()
        )
        with autocast:
            return self.model(**batch, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float | None:
        limit = self.config.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.trainable, limit)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def learning_rate(self) -> float:
        return float(self.schedule.get_last_lr()[0])

    def all_sum(self, values: list[float]) -> list[float]:
        return list(values)

    def save(self, out: Path, state: dict[str, Any]) -> None:
        checkpoint = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": random_state(),
            "loop": state,
        }
        write_atomically(out / TORCH_CHECKPOINT, lambda partial: torch.save(checkpoint, partial))

    def load(self, out: Path) -> dict[str, Any] | None:
        refuse_other_engine(out, DEEPSPEED_CHECKPOINTS, "deepspeed")
        path = out / TORCH_CHECKPOINT
        if not path.exists():
            return None
        # on the CPU: the generators' states must stay CPU tensors; weights move on load
        checkpoint = torch.load(path, weights_only=False, map_location="cpu")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])
        restore_random_state(checkpoint["rng"])
        continue_schedule(self.optimizer, checkpoint["loop"]["step"], self.config)
        return checkpoint["loop"]

    def save_model(self, folder: Path, tokenizer: Any) -> None:
        self.model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


def refuse_other_engine(out: Path, name: str, engine: str) -> None:
    if (out / name).exists():
        raise ConfigError(
            f"{out} holds a checkpoint of engine '{engine}' ({out / name}): resume with that "
            f"engine, or train into another out folder"
        )


def build_engine(model: RegionForConditionalGeneration, config: TrainConfig) -> Engine:
    """The engine the config names, around `model`."""
    if config.engine == "torch":
        return TorchEngine(model, config)
    try:
        from regionkit.train.deepspeed_engine import DeepSpeedEngine
    except ImportError as error:
        raise ConfigError(
            f"engine 'deepspeed' needs DeepSpeed ({error}): install regionkit's train extra "
            "(pip install 'regionkit[train]'), or set engine: torch for one plain process"
        ) from error
    return DeepSpeedEngine(model, config)
