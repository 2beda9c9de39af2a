"""The training loop: a run stopped and resumed takes the same batches and reaches the same
losses as one that never stopped; configs are checked key by key."""

from __future__ import annotations

import json
import re
import shutil
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from regionkit.cli import main
from regionkit.train.config import ConfigError, load_config, parse_config
from regionkit.train.optimization import learning_rate_factor
from regionkit.train.trainer import train
from tests.train.datasets import write_split
from tests.train.test_overfit import _rows


def _dataset(folder: Path, rows: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True)
    if rows is None:
        rows = _rows(folder) + [{**row, "id": row["id"] + "b"} for row in _rows(folder)]
    return write_split(folder, rows)


def _config(data: Path, out: Path, steps: int) -> dict:
    return {
        "model": "tiny", "data": [str(data)], "out": str(out), "steps": steps,
        "micro_batch_size": 3, "accumulation": 2, "learning_rate": 3e-3, "warmup_steps": 1,
        "save_every": 2, "log_every": 1, "max_tiles": 4, "max_length": 512, "seed": 4,
        "engine": "torch",
    }  # fmt: skip


def test_a_resumed_run_takes_the_same_batches_and_reaches_the_same_losses(tmp_path):
    data = _dataset(tmp_path / "data")
    whole = train(parse_config(_config(data, tmp_path / "whole", 5)))
    assert [r["step"] for r in whole] == [1, 2, 3, 4, 5]
    first = train(parse_config(_config(data, tmp_path / "cut", 2)))  # stopped after step 2
    rest = train(parse_config(_config(data, tmp_path / "cut", 5)))  # the same command, resumed
    assert [r["step"] for r in rest] == [3, 4, 5]
    losses = [r["loss"] for r in first + rest]
    assert losses == pytest.approx([r["loss"] for r in whole], rel=1e-5)
    assert whole[-1]["loss"] < whole[0]["loss"]


def test_rows_it_cannot_use_whole_are_counted_in_the_log(tmp_path):
    rows = _rows(tmp_path)
    long = "dog " * 600 + "<seg0>"  # over the 512 tokens of max_length
    rows[1]["messages"] += [
        {"role": "user", "content": "and the dog ?"},
        {"role": "assistant", "content": long},
    ]  # kept with its first turn only
    rows[2]["messages"][1]["content"] = long  # too long even cut to its first turn
    rows[3]["messages"] = []  # a builder's row: nothing to train on
    data = _dataset(tmp_path / "data", rows)
    config = {**_config(data, tmp_path / "run", 1), "micro_batch_size": 4, "accumulation": 1}
    [record] = train(parse_config(config))  # one batch: the whole epoch
    used = {key: record[key] for key in ("samples", "turns_cut", "too_long", "no_dialogue")}
    assert used == {"samples": 2, "turns_cut": 1, "too_long": 1, "no_dialogue": 1}


def test_an_epoch_without_a_usable_row_says_why(tmp_path):
    rows = _rows(tmp_path)
    for row in rows:
        row["messages"] = []
    data = _dataset(tmp_path / "data", rows)
    with pytest.raises(ValueError, match="4 rows without a dialogue: a builder's output"):
        train(parse_config(_config(data, tmp_path / "run", 1)))


def test_a_run_killed_before_saving_its_model_saves_it_when_started_again(tmp_path):
    data = _dataset(tmp_path / "data")
    config = parse_config(_config(data, tmp_path / "run", 2))
    train(config)
    shutil.rmtree(tmp_path / "run" / "model")  # killed after the last checkpoint
    assert train(config) == []  # no step left to take
    assert (tmp_path / "run" / "model" / "config.json").exists()


def test_the_schedule_warms_up_then_decays():
    factors = [learning_rate_factor(s, warmup=2, total=6) for s in range(7)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == 1.0 and factors[-1] == pytest.approx(0.0)
    assert all(a >= b for a, b in pairwise(factors[1:]))


def test_configs_are_checked_key_by_key(tmp_path):
    base = _config(tmp_path, tmp_path / "out", 1)
    with pytest.raises(ConfigError, match=r"unknown keys \['stepz'\]"):
        parse_config({**base, "stepz": 3})
    with pytest.raises(ConfigError, match="steps must be int"):
        parse_config({**base, "steps": "ten"})
    with pytest.raises(ConfigError, match="accumulation must be at least 1"):
        parse_config({**base, "accumulation": 0})
    with pytest.raises(ConfigError, match="gradient_accumulation_steps: set accumulation"):
        parse_config({**base, "deepspeed": {"gradient_accumulation_steps": 4}})
    with pytest.raises(ConfigError, match=r"freeze \['llm'\]"):
        parse_config({**base, "freeze": ["llm"]})
    with pytest.raises(ConfigError, match="missing"):
        parse_config({"model": "tiny"})
    path = tmp_path / "run.yaml"
    path.write_text("model: tiny\nout: runs/a\ndata:\n  - path: out/seed\n    weight: 2\n")
    config = load_config(path)
    assert config.data[0].weight == 2.0 and config.steps == 100


def test_regionkit_train_runs_a_config_and_refuses_a_bad_one(tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    config = tmp_path / "run.json"
    config.write_text(json.dumps(_config(data, tmp_path / "run", 2)))
    assert main(["train", str(config)]) == 0
    said = capsys.readouterr().out
    assert "step 2/2  loss" in said and "tokens/s" in said
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    config.write_text(json.dumps({**_config(data, tmp_path / "run", 2), "lr": 0.1}))
    assert main(["train", str(config)]) == 2
    assert "unknown keys ['lr']" in capsys.readouterr().err


def test_the_readme_config_is_a_valid_config():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("Training reads a config file", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)
    config = parse_config(yaml.safe_load(block), "README")
    assert config.engine == "deepspeed" and config.zero_stage == 2 and config.accumulation == 8


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")), ids=str
)
def test_the_example_configs_are_valid(path):
    config = load_config(path)
    assert config.data and config.out.startswith("runs/")
