"""AdamW with linear warmup and cosine decay: the update every engine applies."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

from regionkit.train.config import TrainConfig


def learning_rate_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def adamw(parameters: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.AdamW:
    """torch's AdamW at the config's peak learning rate and weight decay."""
    return torch.optim.AdamW(
        list(parameters), lr=config.learning_rate, weight_decay=config.weight_decay
    )


def schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LambdaLR:
    """The warmup + cosine schedule over the config's steps."""
    return LambdaLR(
        optimizer, partial(learning_rate_factor, warmup=config.warmup_steps, total=config.steps)
    )


def continue_schedule(optimizer: torch.optim.Optimizer, step: int, config: TrainConfig) -> None:
    """Set the learning rate a resumed run has at `step`: the run that saved the checkpoint
    may have planned fewer steps, so its restored rate followed another schedule."""
    factor = learning_rate_factor(step, config.warmup_steps, config.steps)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
