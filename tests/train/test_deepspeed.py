"""Training under DeepSpeed (its CPU accelerator, gloo): two ranks of two dataloader workers
each take every row once per step and make the very update one process makes over the same
rows; ZeRO-3 and the plain torch engine agree with ZeRO-2; bf16 trains in bf16; a run killed
after a checkpoint and started again goes on with the batches and losses of a run never
killed. Each run is a process of its own, as a user starts it: `regionkit train`
without a launcher, or under `torchrun`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from regionkit.train.config import parse_config
from regionkit.train.trainer import train
from tests.train.datasets import write_split
from tests.train.launch import kill_after_checkpoint, read_log, run_training
from tests.train.test_overfit import _rows

pytest.importorskip("deepspeed")

ROWS = 8  # one step: 2 ranks x 2 micro-batches x 2 rows, or 1 process x 4 x 2
STEPS = 8


def _dataset(folder: Path, count: int = ROWS) -> Path:
    """Distinct rows, a row group each, so every rank and worker gets its own share. Their
    answers are 0, 1, 2, 4, ..., 64 words long before the mask, so no two halves of them
    hold as many labelled tokens, and normalising by a rank's own tokens shows; one row's
    question names a region, so in each step one rank's batch uses the mask prompt encoder
    and the other's does not."""
    folder.mkdir(parents=True)
    rows = _rows(folder, count)
    for n, row in enumerate(rows):
        row["messages"][1]["content"] = "dog " * (2 ** (n - 1) % 97 if n else 0) + "<seg0>"
    rows[3]["messages"][0]["content"] = "segment the dog near <region0> ."
    return write_split(folder, rows, row_group_size=1)


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
def runs(tmp_path_factory) -> dict:
    """The runs every test below compares, made once."""
    folder = tmp_path_factory.mktemp("deepspeed")
    data = _dataset(folder / "data")
    configs = {
        "one": _config(data, folder / "one", STEPS),
        "two_ranks": _config(data, folder / "two_ranks", STEPS, accumulation=2, num_workers=2),
        "zero3": _config(data, folder / "zero3", STEPS, zero_stage=3),
        "bf16": _config(data, folder / "bf16", STEPS, precision="bf16"),
    }
    made = {
        name: (c["out"], run_training(c, folder, 2 if name == "two_ranks" else 1))
        for name, c in configs.items()
    }
    killed = _config(data, folder / "killed", STEPS, save_every=2)
    complete = Path(killed["out"]) / "checkpoints" / "complete"
    made["killed_at"] = kill_after_checkpoint(killed, folder, complete)
    made["logged_before_kill"] = len(read_log(killed))
    made["resumed"] = (killed["out"], run_training(killed, folder))
    # ten rows for four readers: the ranks' shares differ, and so do their stream positions
    uneven = _dataset(folder / "uneven", 10)
    two = {"accumulation": 2, "num_workers": 2, "micro_batch_size": 2}
    whole = _config(uneven, folder / "uneven_whole", STEPS, **two)
    made["uneven_whole"] = (whole["out"], run_training(whole, folder, 2))
    cut = _config(uneven, folder / "uneven_cut", 2, **two)
    run_training(cut, folder, 2)
    made["uneven_resumed"] = (cut["out"], run_training({**cut, "steps": STEPS}, folder, 2))
    return made


def test_two_ranks_make_the_update_of_one_process_over_the_same_rows(runs):
    one, two = runs["one"][1], runs["two_ranks"][1]
    assert [r["samples"] for r in two] == [ROWS] * STEPS  # every row, once, each step
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
    plain = train(parse_config(_config(data, tmp_path / "plain", STEPS, engine="torch")))
    for name in ("loss", "grad_norm"):
        expected = [r[name] for r in runs["one"][1]]
        assert [r[name] for r in runs["zero3"][1]] == pytest.approx(expected, rel=1e-3)
        assert [r[name] for r in plain] == pytest.approx(expected, rel=1e-3)


def test_a_killed_run_resumes_with_the_next_batch_and_the_same_losses(runs):
    saved = int(runs["killed_at"].removeprefix("step-"))
    assert saved < STEPS, "the run finished before it could be killed"
    log = runs["resumed"][1]
    resumed = log[runs["logged_before_kill"] :]
    assert [r["step"] for r in resumed] == list(range(saved + 1, STEPS + 1))
    whole = {r["step"]: r["loss"] for r in runs["one"][1]}
    assert [r["loss"] for r in resumed] == pytest.approx(
        [whole[r["step"]] for r in resumed], rel=1e-5
    )
    checkpoints = Path(runs["resumed"][0]) / "checkpoints"
    assert (checkpoints / "complete").read_text() == f"step-{STEPS}"
    assert sorted(p.name for p in checkpoints.glob("step-*")) == [f"step-{STEPS}"]


def test_bf16_trains_in_bf16_near_the_fp32_losses(runs):
    losses = [r["loss"] for r in runs["one"][1]]
    assert [r["loss"] for r in runs["bf16"][1]] == pytest.approx(losses, rel=2e-2)
    dtypes = {str(w.dtype) for w in _weights(runs["bf16"][0]).values()}
    assert "torch.bfloat16" in dtypes


def test_two_ranks_resume_each_at_its_own_place_in_the_stream(runs):
    # stopped after step 2 (the schedule's first two steps are the same for 2 and 8 steps)
    resumed = [r["loss"] for r in runs["uneven_resumed"][1]]
    assert resumed == pytest.approx([r["loss"] for r in runs["uneven_whole"][1]], rel=1e-5)
