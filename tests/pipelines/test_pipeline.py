"""Pipelines of steps over a built dataset: the guarantees every pipeline keeps, and faults.

Resume, byte-identical reruns, quarantine per stage and the balance hold for any reader and
steps; a Ray worker killed mid-shard is rerun to the same bytes; an error in a step fails its
shard without a retry loop; a shard running past its timeout is stopped and named.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray.cloudpickle
from datasets import load_dataset

from regionkit.builders.base import Built, Rejected
from regionkit.pipelines.build import BuildFailed, BuildOptions, run_pipeline
from regionkit.pipelines.out_folder import OutFolderRefused
from regionkit.pipelines.readers import DatasetReader
from regionkit.pipelines.shard_run import Pipeline
from regionkit.pipelines.step import Step, StepResult, StepStats
from regionkit.pipelines.validate import ValidateRows

# Ray workers cannot import test modules: ship this module's steps with the pipeline, as
# cloudpickle does for steps defined in a user's script.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class CaptionRegions(Step):
    """Adds one caption naming a row's regions: a deterministic transformation."""

    name = "caption_regions"
    version = "1"

    def __init__(self, prefix: str = "regions:") -> None:
        self.prefix = prefix

    def params(self) -> dict[str, Any]:
        return {"prefix": self.prefix}

    def process(self, rows: list[Built]) -> StepResult:
        for built in rows:
            names = sorted({r["category"] or "?" for r in built.row["regions"]})
            built.row["captions"] = [*built.row["captions"], f"{self.prefix} {', '.join(names)}"]
        return StepResult(rows)


class DropCrowded(Step):
    """Refuses rows holding more than `most` regions."""

    name = "drop_crowded"
    version = "1"

    def __init__(self, most: int) -> None:
        self.most = most

    def params(self) -> dict[str, Any]:
        return {"most": self.most}

    def process(self, rows: list[Built]) -> StepResult:
        kept, rejected = [], []
        for built in rows:
            count = len(built.row["regions"])
            if count > self.most:
                reason = f"{count} regions, more than {self.most}"
                rejected.append(Rejected(built.row["id"], "crowded", reason, built.units))
            else:
                kept.append(built)
        return StepResult(kept, rejected)


class OnRow(Step):
    """Does `act` when a batch holds `row_id`: the faults below, each on one row."""

    version = "1"

    def __init__(self, row_id: str) -> None:
        self.row_id = row_id

    def act(self) -> None:
        raise NotImplementedError

    def process(self, rows: list[Built]) -> StepResult:
        if any(b.row["id"] == self.row_id for b in rows):
            self.act()
        return StepResult(rows)


class DieOnce(OnRow):
    """Kills its own worker process the first time (a marker file remembers)."""

    name = "die_once"

    def __init__(self, marker: Path, row_id: str) -> None:
        super().__init__(row_id)
        self.marker = marker

    def act(self) -> None:
        if not self.marker.exists():
            self.marker.write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)


class FailOn(OnRow):
    """Raises, counting its attempts in `attempts` (a bug in a step's code)."""

    name = "fail_on"

    def __init__(self, attempts: Path, row_id: str) -> None:
        super().__init__(row_id)
        self.attempts = attempts

    def act(self) -> None:
        with self.attempts.open("a") as file:
            file.write("attempt\n")
        raise ValueError(f"cannot handle {self.row_id}")


class Stall(OnRow):
    """Sleeps, as a hung remote call would."""

    name = "stall"

    def __init__(self, row_id: str, seconds: float) -> None:
        super().__init__(row_id)
        self.seconds = seconds

    def act(self) -> None:
        time.sleep(self.seconds)


def _options(out: Path, **kwargs: Any) -> BuildOptions:
    return BuildOptions(out, progress=False, **kwargs)


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a dataset folder except the resume state."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_progress" not in p.parts
    }


def _two_steps(dataset: Path, most: int = 4) -> Pipeline:
    steps = [CaptionRegions(), DropCrowded(most), ValidateRows()]
    return Pipeline(DatasetReader([dataset]), steps, name="captioned")


def test_steps_run_as_plain_python_counting_and_naming_their_stage():
    rows = [Built({"id": f"x:{n}", "regions": [{}] * n}, {"row": 1}) for n in (1, 5, 2)]
    stats = StepStats()
    result = DropCrowded(most=2).run(rows, stats)
    assert [b.row["id"] for b in result.rows] == ["x:1", "x:2"]
    assert [(r.key, r.stage, r.code, dict(r.units)) for r in result.rejected] == [
        ("x:5", "drop_crowded", "crowded", {"row": 1})
    ]
    assert (stats.rows_in, stats.rows_out, dict(stats.rejected)) == (3, 2, {"crowded": 1})
    assert stats.seconds >= 0


def test_two_steps_over_a_built_dataset_resume_rerun_and_balance(coco_dataset, tmp_path):
    source = json.loads((coco_dataset / "manifest.json").read_text())
    out = tmp_path / "captioned"
    report = run_pipeline(_two_steps(coco_dataset), _options(out))

    rows_in = source["splits"]["val2017"]["rows"]
    units = report.stats.to_json()["units"]["row"]
    assert units["in"] == rows_in == units["out"] + units["quarantined"]
    assert units["quarantined"] > 0 and units["out"] > 0
    lines = [
        json.loads(line)
        for path in sorted((out / "quarantine").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert {(line["stage"], line["code"]) for line in lines} == {("drop_crowded", "crowded")}
    assert len(lines) == units["quarantined"]

    manifest = json.loads((out / "manifest.json").read_text())
    steps = manifest["recipe"]["steps"]
    assert [(s["name"], s["version"], s["params"]) for s in steps] == [
        ("caption_regions", "1", {"prefix": "regions:"}),
        ("drop_crowded", "1", {"most": 4}),
        ("validate", "1", {}),
        ("write", "1", {"compression": "zstd", "row_group_size": 256}),
    ]
    assert steps[1]["rows_in"] == rows_in and steps[1]["rejected"] == {"crowded": len(lines)}
    assert manifest["builders"][0]["source"] == "coco"
    assert [f["path"] for f in manifest["source_files"]] == [str(coco_dataset / "manifest.json")]

    # a shard whose every row was refused is written without row groups, and still loads
    assert 0 in [shard["rows"] for shard in manifest["splits"]["val2017"]["shards"]]
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf"))["val2017"]
    assert ds.num_rows == units["out"] and all(len(r["regions"]) <= 4 for r in ds)
    assert all(r["captions"][-1].startswith("regions: ") for r in ds)
    reference = _files(out)

    rerun = run_pipeline(_two_steps(coco_dataset), _options(out))
    assert (rerun.shards_built, rerun.shards_skipped) == (0, 4)
    assert _files(out) == reference

    (out / "_progress" / "val2017-00002-of-00004.json").unlink()
    (out / "data" / "val2017-00002-of-00004.parquet").unlink()
    resumed = run_pipeline(_two_steps(coco_dataset), _options(out))
    assert (resumed.shards_built, resumed.shards_skipped) == (1, 3)
    assert _files(out) == reference

    with pytest.raises(OutFolderRefused, match="drop_crowded 1"):
        run_pipeline(_two_steps(coco_dataset, most=6), _options(out))


def test_a_worker_killed_mid_shard_is_rerun_to_the_same_bytes(coco_dataset, tmp_path):
    victim = "coco:val2017:107"  # in shard 0 of 4
    reference = tmp_path / "reference"
    marker = tmp_path / "killed"
    marker.write_text("already")  # the reference run does not die
    steps = [CaptionRegions(), DieOnce(marker, victim)]
    pipeline = Pipeline(DatasetReader([coco_dataset]), steps)
    run_pipeline(pipeline, _options(reference, name="captioned"))

    marker.unlink()
    out = tmp_path / "out"
    report = run_pipeline(pipeline, _options(out, name="captioned"))
    assert marker.read_text() == "killed once"  # the worker really died
    assert report.shards_built == 4
    assert _files(out) == _files(reference)


def test_an_error_in_a_step_fails_its_shard_once_and_names_it(coco_dataset, tmp_path):
    attempts = tmp_path / "attempts"
    steps = [FailOn(attempts, "coco:val2017:107")]
    out = tmp_path / "out"
    with pytest.raises(BuildFailed) as failed:
        run_pipeline(Pipeline(DatasetReader([coco_dataset]), steps), _options(out, retries=3))
    message = str(failed.value)
    assert "1 shard(s) failed" in message
    assert "val2017-00000-of-00004: ValueError: cannot handle coco:val2017:107" in message
    assert attempts.read_text() == "attempt\n"  # not retried: it would fail the same way
    assert len(list((out / "data").glob("*.parquet"))) == 3  # the others finished


def test_a_shard_past_its_timeout_is_stopped_and_named(coco_dataset, tmp_path):
    steps = [Stall("coco:val2017:107", seconds=120)]
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(BuildFailed, match=r"val2017-00000-of-00004: ran past the 3 s shard"):
        run_pipeline(Pipeline(DatasetReader([coco_dataset]), steps), _options(out, shard_timeout=3))
    assert time.monotonic() - started < 60
    assert not (out / "_progress" / "val2017-00000-of-00004.json").exists()
