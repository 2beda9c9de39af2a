"""Training under DeepSpeed (its CPU accelerator, gloo): two ranks of two dataloader workers
each take every row once per step and make the very update one process makes over the same
rows; ZeRO-3 and the plain torch engine agree with ZeRO-2; a run stopped and resumed goes on
with the same losses. Each run is a process of its own, as a user starts it: `regionkit train`
without a launcher, or under `torchrun`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from regionkit.catalog.schema import ARROW_SCHEMA
from regionkit.train.config import parse_config
from regionkit.train.trainer import train
from tests.train.launch import run_training
from tests.train.test_overfit import _rows

pytest.importorskip("deepspeed")

ROWS = 8  # one step: 2 ranks x 2 micro-batches x 2 rows, or 1 process x 4 x 2


def _dataset(folder: Path) -> Path:
    """Eight distinct rows, a row group each, so every rank and worker gets its own share; their
    answers are 0, 1, 2, 4, ..., 64 words long before the mask, so no two halves of them
    hold as many labelled tokens, and normalising by a rank's own tokens shows."""
    (folder / "data").mkdir(parents=True)
    rows = _rows(folder, ROWS)
    for n, row in enumerate(rows):
        row["messages"][1]["content"] = "dog " * (2 ** (n - 1) if n else 0) + "<seg0>"
    table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
    pq.write_table(table, folder / "data/train.parquet", row_group_size=1)
    shards = [{"file": "data/train.parquet", "rows": ROWS}]
    (folder / "manifest.json").write_text(
        json.dumps({"splits": {"train": {"rows": ROWS, "shards": shards}}})
    )
    return folder


def _config(data: Path, out: Path, steps: int, **changes) -> dict:
    return {
        "model": "tiny", "data": [str(data)], "out": str(out), "steps": steps,
        "micro_batch_size": 2, "accumulation": 4, "learning_rate": 3e-3, "warmup_steps": 1,
        "save_every": 1, "log_every": 1, "max_tiles": 4, "max_length": 512, "seed": 3,
        "engine": "deepspeed", **changes,
    }  # fmt: skip


def _weights(out: str) -> dict[str, torch.Tensor]:
    return load_file(Path(out) / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[str, list[dict]]]:
    """The runs every test below compares, made once."""
    folder = tmp_path_factory.mktemp("deepspeed")
    data = _dataset(folder / "data")
    configs = {
        "one": _config(data, folder / "one", 4),
        "two_ranks": _config(data, folder / "two_ranks", 4, accumulation=2, num_workers=2),
        "zero3": _config(data, folder / "zero3", 4, zero_stage=3),
    }
    made = {
        name: (c["out"], run_training(c, folder, 2 if name == "two_ranks" else 1))
        for name, c in configs.items()
    }
    cut = _config(data, folder / "cut", 2)
    run_training(cut, folder)
    made["resumed"] = (cut["out"], run_training({**cut, "steps": 4}, folder))
    return made


def test_two_ranks_make_the_update_of_one_process_over_the_same_rows(runs):
    one, two = runs["one"][1], runs["two_ranks"][1]
    assert [r["samples"] for r in two] == [ROWS] * 4  # every row, once, each step
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)
    # Adam's update hardly moves when all gradients scale alike: their norm does
    assert [r["grad_norm"] for r in two] == pytest.approx([r["grad_norm"] for r in one], rel=1e-3)
    assert one[-1]["loss"] < one[0]["loss"]
    for name, weight in _weights(runs["one"][0]).items():
        torch.testing.assert_close(
            _weights(runs["two_ranks"][0])[name], weight, rtol=1e-3, atol=1e-4, msg=name
        )


def test_zero3_and_the_torch_engine_agree_with_zero2(runs, tmp_path):
    data = Path(runs["one"][0]).parent / "data"
    plain = train(parse_config(_config(data, tmp_path / "plain", 4, engine="torch")))
    for name in ("loss", "grad_norm"):
        expected = [r[name] for r in runs["one"][1]]
        assert [r[name] for r in runs["zero3"][1]] == pytest.approx(expected, rel=1e-3)
        assert [r[name] for r in plain] == pytest.approx(expected, rel=1e-3)


def test_a_resumed_run_goes_on_with_the_same_losses(runs):
    resumed = runs["resumed"][1]  # the log holds both runs: steps 1-2, then 3-4 after resuming
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == pytest.approx(
        [r["loss"] for r in runs["one"][1]], rel=1e-5
    )
    checkpoints = Path(runs["resumed"][0]) / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-4"
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-4"]
