"""A training run's settings: a YAML or JSON file a user copies and edits, checked on load.

Unknown keys, wrong types and impossible values are refused with the key's name, before a
model is built or a GPU is touched.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regionkit.train.lora import LoraSettings


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key."""


@dataclass(frozen=True)
class DataConfig:
    """One dataset of the mix: a folder built by regionkit, its weight and split."""

    path: str
    weight: float = 1.0
    split: str = "train"


@dataclass(frozen=True)
class TrainConfig:
    """What a run trains, on what, and how.

    Attributes:
        model: `tiny` (a random tiny region model with the tiny tokenizer) or a PerceptionLM
            checkpoint (folder or Hub id) loaded with `load_region_model`.
        data: the datasets, mixed by weight.
        out: where checkpoints and logs go; a rerun resumes from the last checkpoint there.
        steps: optimizer steps.
        micro_batch_size: rows per forward pass.
        accumulation: micro-batches per optimizer step.
        learning_rate, weight_decay, warmup_steps: AdamW with linear warmup, then cosine decay.
        grad_clip: gradient-norm clip (0: none).
        freeze: parts left untrained: `vision_tower`, `language_model`, `projector`.
        seed: fixes the model's initialisation, the data order and every draw.
        num_workers: dataloader processes per rank.
        save_every: steps between checkpoints (the last step is always saved).
        log_every: steps between log lines.
        max_tiles, tile_size, patch_size, max_length: the processor's settings (`tiny` sets
            its own tile and patch size).
        engine: `deepspeed` (`deepspeed.initialize`; one plain process or any number under
            `torchrun` or the `deepspeed` launcher) or `torch` (one plain process, torch's
            AdamW, no DeepSpeed needed).
        zero_stage: DeepSpeed's ZeRO stage, 0 to 3.
        offload: `none`, `optimizer` (optimizer states on the CPU, DeepSpeed's CPU Adam) or
            `all` (parameters too; stage 3).
        precision: `auto` (bf16 on a GPU that has it, else fp32), `bf16` or `fp32`.
        deepspeed: further DeepSpeed settings, laid over the ones regionkit derives.
        lora: LoRA adapters on the language model (`{rank, alpha, dropout, targets}`, each
            optional), or none: the language model trains whole unless frozen.
    """

    model: str
    data: list[DataConfig]
    out: str
    steps: int = 100
    micro_batch_size: int = 1
    accumulation: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    freeze: list[str] = field(default_factory=list)
    seed: int = 0
    num_workers: int = 0
    save_every: int = 100
    log_every: int = 10
    max_tiles: int = 16
    tile_size: int = 448
    patch_size: int = 14
    max_length: int = 4096
    engine: str = "deepspeed"
    zero_stage: int = 2
    offload: str = "none"
    precision: str = "auto"
    deepspeed: dict = field(default_factory=dict)
    lora: LoraSettings | None = None


FREEZABLE = ("vision_tower", "language_model", "projector")
CHOICES = {
    "engine": ("deepspeed", "torch"),
    "offload": ("none", "optimizer", "all"),
    "precision": ("auto", "bf16", "fp32"),
    "zero_stage": (0, 1, 2, 3),
}
DERIVED_DEEPSPEED = {
    "train_micro_batch_size_per_gpu": "micro_batch_size",
    "gradient_accumulation_steps": "accumulation",
    "train_batch_size": "micro_batch_size and accumulation",
    "gradient_clipping": "grad_clip",
    "scheduler": "warmup_steps (the warmup and cosine schedule is regionkit's)",
    "fp16": "precision (bf16 or fp32)",
}
"""DeepSpeed settings regionkit derives from its own keys and relies on: the loop divides a
window's losses by the window it takes, steps its own schedule and casts to bf16 only."""
POSITIVE = ("steps", "micro_batch_size", "accumulation", "save_every", "log_every", "max_tiles")


def load_config(path: str | Path) -> TrainConfig:
    """A `TrainConfig` from a `.yaml`/`.yml` or `.json` file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return parse_config(data, str(path))


def parse_config(data: Any, where: str = "config") -> TrainConfig:
    """A `TrainConfig` from plain data, every key checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings")
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    missing = sorted(k for k, f in known.items() if _required(f) and k not in data)
    if missing:
        raise ConfigError(f"{where}: missing {missing}")
    values = dict(data)
    if values.get("lora") is not None:
        values["lora"] = _lora_entry(values["lora"], f"{where}: lora")
    values["data"] = [
        _data_entry(entry, f"{where}: data[{i}]") for i, entry in enumerate(values["data"] or [])
    ]
    if not values["data"]:
        raise ConfigError(f"{where}: data must list at least one dataset")
    for name, value in values.items():
        _check_type(where, name, value, known[name].type)
    for name in POSITIVE:
        if name in values and values[name] < 1:
            raise ConfigError(f"{where}: {name} must be at least 1, got {values[name]}")
    for name, allowed in CHOICES.items():
        if name in values and values[name] not in allowed:
            raise ConfigError(
                f"{where}: {name} must be one of {list(allowed)}, got {values[name]!r}"
            )
    derived = sorted(set(values.get("deepspeed", {})) & set(DERIVED_DEEPSPEED))
    if derived:
        instead = "; ".join(f"{key}: set {DERIVED_DEEPSPEED[key]}" for key in derived)
        raise ConfigError(f"{where}: deepspeed {derived} are regionkit's own settings ({instead})")
    if values.get("offload") == "all" and values.get("zero_stage", 2) != 3:
        raise ConfigError(f"{where}: offload 'all' moves parameters, which needs zero_stage 3")
    if values.get("offload", "none") != "none" and values.get("zero_stage", 2) == 0:
        raise ConfigError(f"{where}: offload needs zero_stage 1 or more")
    if values.get("lora") is not None:
        if "language_model" in values.get("freeze", []):
            raise ConfigError(
                f"{where}: lora trains adapters on the language model; do not freeze it"
            )
        if values.get("zero_stage", 2) == 3:
            raise ConfigError(
                f"{where}: lora merges its adapters on save, which needs zero_stage 2 or less"
            )
    bad = sorted(set(values.get("freeze", [])) - set(FREEZABLE))
    if bad:
        raise ConfigError(f"{where}: freeze {bad} is not one of {list(FREEZABLE)}")
    return TrainConfig(**values)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _data_entry(entry: Any, where: str) -> DataConfig:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or "path" not in entry:
        raise ConfigError(f"{where}: expected a path or {{path, weight, split}}")
    unknown = sorted(set(entry) - {"path", "weight", "split"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    if not float(entry.get("weight", 1.0)) > 0:
        raise ConfigError(f"{where}: weight must be more than 0")
    return DataConfig(
        str(entry["path"]), float(entry.get("weight", 1.0)), str(entry.get("split", "train"))
    )


def _lora_entry(entry: Any, where: str) -> LoraSettings:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of {{rank, alpha, dropout, targets}}")
    known = {f.name for f in dataclasses.fields(LoraSettings)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    settings = LoraSettings(**entry)
    if not (isinstance(settings.rank, int) and settings.rank >= 1):
        raise ConfigError(
            f"{where}: rank must be a whole number of at least 1, got {settings.rank!r}"
        )
    if not (isinstance(settings.targets, list) and settings.targets):
        raise ConfigError(f"{where}: targets must list the linear layers to adapt")
    return settings


def _check_type(where: str, name: str, value: Any, annotation: str) -> None:
    expected = {"int": int, "float": (int, float), "str": str, "dict": dict}.get(annotation)
    wrong = expected is not None and not isinstance(value, expected)
    if wrong or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {name} must be {annotation}, got {value!r}")
    if annotation == "list[str]" and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        raise ConfigError(f"{where}: {name} must be a list of strings, got {value!r}")
