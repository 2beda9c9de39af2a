"""A few steps of the tiny model on a dataset a recipe built lower its loss."""

from __future__ import annotations

from regionkit.cli import main
from regionkit.train.config import parse_config
from regionkit.train.trainer import train


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
        "max_tiles": 4, "max_length": 1024, "save_every": 8,
    }  # fmt: skip
    records = train(parse_config(config))
    assert len(records) == 8
    assert records[-1]["loss"] < records[0]["loss"]
