"""The model under `deepspeed.initialize`: ZeRO stage 2 by default, stage 3 and CPU offload by
config, bf16 on GPUs, any number of processes from `torchrun` or the `deepspeed` launcher, or
one plain process without either.

DeepSpeed averages gradients over the processes, while the loop's losses are already each
process's share of the whole window's (its tokens, masks and slots summed over every
process), so `backward` scales by the number of processes to make the sum exact. Checkpoints
are DeepSpeed's own folders, with each rank's stream position and random generators beside
them, and a `complete` file written once every rank has finished, so a run killed while saving
resumes from the one before.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist

from regionkit.modeling import RegionForConditionalGeneration
from regionkit.train.config import ConfigError, TrainConfig
from regionkit.train.distributed import device_for, launch_environment, placement
from regionkit.train.engine import (
    DEEPSPEED_CHECKPOINTS,
    TORCH_CHECKPOINT,
    random_state,
    refuse_other_engine,
    restore_random_state,
    use_bf16,
    write_atomically,
)
from regionkit.train.optimization import adamw, continue_schedule, schedule

COMPLETE = "complete"
"""Names the newest checkpoint every rank finished writing (DeepSpeed's `latest` is written by
rank 0 without waiting for the others)."""

QUIET = 1 << 30
"""DeepSpeed's own step printing, pushed out of reach: the loop logs."""


def deepspeed_config(config: TrainConfig, bf16: bool) -> dict[str, Any]:
    """DeepSpeed's settings for this run, with the config's `deepspeed` entries on top."""
    zero: dict[str, Any] = {"stage": config.zero_stage}
    if config.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if config.offload == "all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    settings: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.accumulation,
        "gradient_clipping": config.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "steps_per_print": QUIET,
        "wall_clock_breakdown": False,
    }
    if config.offload != "none":  # DeepSpeed's CPU Adam, for an optimizer that lives on the CPU
        settings["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": config.learning_rate, "weight_decay": config.weight_decay},
        }
    return _merged(settings, config.deepspeed)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


class DeepSpeedEngine:
    """The model, its optimizer and schedule as one `deepspeed.initialize` engine."""

    def __init__(self, model: RegionForConditionalGeneration, config: TrainConfig) -> None:
        launch_environment()
        self.where = placement()
        self.device = device_for(self.where)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.config = config
        trainable = [p for p in model.parameters() if p.requires_grad]
        settings = deepspeed_config(config, use_bf16(config, self.device))
        # what DeepSpeed will do, the config's `deepspeed` entries included
        self.bf16 = bool(settings.get("bf16", {}).get("enabled"))
        self.zero_stage = int(settings.get("zero_optimization", {}).get("stage", 0))
        if config.lora is not None and self.zero_stage == 3:
            raise ConfigError("lora merges its adapters on save, which needs ZeRO stage 2 or less")
        client_optimizer = None if "optimizer" in settings else adamw(trainable, config)
        self.engine, self.optimizer, _, self.schedule = deepspeed.initialize(
            model=model,
            model_parameters=trainable,
            optimizer=client_optimizer,
            lr_scheduler=lambda optimizer: schedule(optimizer, config),
            config=settings,
        )
        self.model = model

    def forward(self, batch: dict[str, Any], **kwargs: Any) -> Any:
        if self.bf16:
            batch = {
                k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in batch.items()
            }
        return self.engine(**batch, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        # the loss is this process's share of the window's, already divided over the window
        self.engine.backward(loss * self.where.world_size, scale_wrt_gas=False)
        self.engine.step()  # applies the update only at the window's end

    def step(self) -> float | None:
        """Nothing left to do but report: DeepSpeed counts micro-batches and, in `backward`,
        updated at the window's last one (its `gradient_accumulation_steps` is the config's).
        ZeRO measures the gradients' norm; stage 0 without clipping does not."""
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    def learning_rate(self) -> float:
        return float(self.schedule.get_last_lr()[0])

    def all_sum(self, values: list[float]) -> list[float]:
        total = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.tolist()

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def save(self, out: Path, state: dict[str, Any]) -> None:
        folder = out / DEEPSPEED_CHECKPOINTS
        tag = f"step-{state['step']}"
        # each rank's own stream position and generators: DeepSpeed keeps rank 0's state only
        own = folder / tag / f"state-rank{self.where.rank}.pt"
        own.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(
            own, lambda partial: torch.save({"loop": state, "rng": random_state()}, partial)
        )
        self.engine.save_checkpoint(str(folder), tag=tag, client_state={"loop": state})
        dist.barrier()  # every rank's files are whole: only now is the checkpoint complete
        if self.where.is_main:
            write_atomically(folder / COMPLETE, lambda partial: partial.write_text(tag))
            for old in folder.glob("step-*"):
                if old.name != tag:
                    shutil.rmtree(old, ignore_errors=True)
        dist.barrier()

    def load(self, out: Path) -> dict[str, Any] | None:
        refuse_other_engine(out, TORCH_CHECKPOINT, "torch")
        folder = out / DEEPSPEED_CHECKPOINTS
        if not (folder / COMPLETE).exists():
            return None
        tag = (folder / COMPLETE).read_text().strip()
        path, client = self.engine.load_checkpoint(str(folder), tag=tag)
        if path is None:
            return None
        own = folder / tag / f"state-rank{self.where.rank}.pt"
        loop = client["loop"]
        if own.exists():
            state = torch.load(own, weights_only=False)
            restore_random_state(state["rng"])
            loop = state["loop"]
        continue_schedule(self.optimizer, loop["step"], self.config)
        return loop

    def save_model(self, folder: Path, tokenizer: Any) -> None:
        parameters = list(self.model.parameters())
        gathered = (
            deepspeed.zero.GatheredParameters(parameters, modifier_rank=None)
            if self.zero_stage == 3
            else contextlib.nullcontext()
        )
        with gathered:
            if self.where.is_main:
                self.model.save_pretrained(folder)
                tokenizer.save_pretrained(folder)
        dist.barrier()
