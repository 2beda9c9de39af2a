"""A few steps of the tiny model under DeepSpeed, in a plain process, on a dataset a recipe
built lower its loss."""

from __future__ import annotations

import pytest

from regionkit.cli import main
from tests.train.launch import run_training

pytest.importorskip("deepspeed")


def test_training_on_a_seed_recipe_lowers_the_loss(ray_cluster, coco_dataset, tmp_path):
    seed = tmp_path / "seed"
    assert (
        main(["recipe", "seed", "--input", str(coco_dataset), "--out", str(seed), "--no-progress"])
        == 0
    )
    config = {
        "model": "tiny", "data": [{"path": str(seed), "split": "val2017"}],
        "out": str(tmp_path / "run"),
        "steps": 8, "micro_batch_size": 2, "accumulation": 2, "learning_rate": 3e-3,
        "max_tiles": 4, "max_length": 1024, "save_every": 8, "engine": "deepspeed",
    }  # fmt: skip
    records = run_training(config, tmp_path)
    assert len(records) == 8
    assert records[-1]["loss"] < records[0]["loss"]
