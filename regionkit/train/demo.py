"""The demo's last act: a few training steps of the tiny model on a recipe's output, then an
evaluation table, on the CPU in seconds. It shows the path works end to end; the numbers of a
few steps of a random tiny model mean nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer
from transformers.utils import logging as transformers_logging

from regionkit.modeling import RegionForConditionalGeneration
from regionkit.train.config import parse_config
from regionkit.train.evaluate import dataset_rows, evaluate, processor_for
from regionkit.train.metrics import Metrics
from regionkit.train.trainer import MODEL, train

DEMO_STEPS = 4


def train_and_evaluate(
    out: Path, train_on: Path, split: str, evaluate_on: Path, evaluate_split: str
) -> tuple[list[dict[str, Any]], dict[str, Metrics]]:
    """Train the tiny model a few steps on `train_on`'s `split`, then score it on
    `evaluate_on`'s referring texts; the training log and the results."""
    config = parse_config(
        {
            "model": "tiny",
            "data": [{"path": str(train_on), "split": split}],
            "out": str(out),
            "steps": DEMO_STEPS,
            "micro_batch_size": 2,
            "accumulation": 1,
            "learning_rate": 3e-3,
            "max_tiles": 4,
            "max_length": 1024,
            "save_every": DEMO_STEPS,
            "engine": "torch",  # one plain process that starts in seconds
        }
    )
    transformers_logging.disable_progress_bar()  # the demo's own summary says it all
    shutil.rmtree(out, ignore_errors=True)  # a second demo trains afresh, not resumes a done run
    records = train(config)
    model = RegionForConditionalGeneration.from_pretrained(out / MODEL).eval()
    processor = processor_for(model, AutoTokenizer.from_pretrained(out / MODEL), max_tiles=4)
    rows = list(dataset_rows(evaluate_on, evaluate_split))
    scores = evaluate(model, processor, rows, max_new_tokens=8).result()
    where = f"{evaluate_on.name}:{evaluate_split}"
    return records, {f"{where}:{kind}": metrics for kind, metrics in scores.items()}
