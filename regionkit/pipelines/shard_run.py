"""One shard through a pipeline, where it runs: read, every step, write, then the receipt.

This is the unit of work a Ray task runs, and tests call it directly. It writes the shard's own
files on the output filesystem (the Parquet file, its quarantine lines, then the receipt that
marks it done, each by atomic rename) and returns the receipt: the driver schedules shards and
keeps receipts, it never carries rows.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regionkit.builders.base import Built, Rejected
from regionkit.pipelines.readers import Reader
from regionkit.pipelines.sharding import Shard
from regionkit.pipelines.stats import BuildStats
from regionkit.pipelines.step import Resources, ShardContext, Step, StepStats
from regionkit.pipelines.storage import dumps_json, dumps_jsonl, write_text_atomic
from regionkit.pipelines.writer import ParquetWriter

BATCH_ROWS = 256
"""Rows handed to the steps at a time: a shard of any size flows through in bounded memory."""

_READY_STEPS: dict[str, Step] = {}
"""Steps set up in this worker process for the current run, by their description: `setup`
runs once per process and run."""

_READY_RUN = ""

_heap_frozen = False


@dataclass
class Pipeline:
    """A reader, the steps its rows go through in order, and the writer at the end.

    Attributes:
        reader: where rows come from.
        steps: what they go through; step names must differ (they name quarantine stages).
        writer: the last step, writing each shard's Parquet file.
        name: what the pipeline makes (a recipe's name), for the manifest and card.
        task_resources: what a shard's task asks for, when not the most any step asks: a
            pipeline that mostly waits on an LLM asks for a fraction of a core, so a worker
            per core is not pinned to each shard.
    """

    reader: Reader
    steps: list[Step]
    writer: ParquetWriter = field(default_factory=ParquetWriter)
    name: str = "regions"
    task_resources: Resources | None = None
    run_id: str = ""
    """Set per run by the engine: steps set up for one run are not reused by the next, whose
    equal-looking steps may hold other state (a fresh budget, another client)."""

    def __post_init__(self) -> None:
        names = [step.name for step in self.all_steps()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"pipeline {self.name!r} has more than one step named {repeated}")

    def all_steps(self) -> list[Step]:
        return [*self.steps, self.writer]

    def describe(self) -> dict[str, Any]:
        """What determines the output besides the input files: reader, steps, their versions."""
        return {
            "name": self.name,
            **self.reader.describe(),
            "steps": [step.describe() for step in self.all_steps()],
        }

    def resources(self) -> Resources:
        """What a shard's task needs: `task_resources`, or the most any step needs."""
        if self.task_resources is not None:
            return self.task_resources
        needed = Resources()
        for step in self.all_steps():
            needed = needed.union(step.resources)
        return needed


def _ready(step: Step, run_id: str) -> Step:
    """The step set up in this process: the first copy of an equal description in this run,
    set up once."""
    global _READY_RUN
    if run_id != _READY_RUN:
        _READY_STEPS.clear()
        _READY_RUN = run_id
    key = f"{type(step).__module__}.{type(step).__qualname__}:{json.dumps(step.describe())}"
    if key not in _READY_STEPS:
        step.setup()
        _READY_STEPS[key] = step
    return _READY_STEPS[key]


def _freeze_heap_once() -> None:
    """Once per process, after the first steps are set up: keep the objects alive now (a Ray
    worker's imports and state, about 120k objects; loaded models) out of the collector's walks.

    A shard makes rows by the hundred thousand and the collector would walk that heap again
    at every full collection: freezing it made COCO shards in a Ray worker about a tenth
    faster. Rows are plain data, freed by reference counting either way.
    """
    global _heap_frozen
    if not _heap_frozen:
        gc.collect()
        gc.freeze()
        _heap_frozen = True


def receipt_path(out: Path, shard: str) -> Path:
    """The receipt that marks a shard as done."""
    return out / "_progress" / f"{shard}.json"


def run_shard(pipeline: Pipeline, shard: Shard, out: Path) -> dict[str, Any]:
    """Run `shard` through `pipeline` into `out`; its receipt (also written to `_progress/`).

    Raises `RuntimeError` when the reader produces a row id twice (a builder bug: ids must be
    unique) or loses track of an input.
    """
    started = time.perf_counter()
    steps = [_ready(step, pipeline.run_id) for step in pipeline.all_steps()]
    _freeze_heap_once()
    context = ShardContext(out, shard.name, shard.split)
    stats = BuildStats()
    for item in shard.items:
        stats.units_in.update(item.units)
    step_stats = {step.name: StepStats() for step in steps}
    read = StepStats(rows_in=len(shard.items))
    quarantine: list[Rejected] = []
    for step in steps:
        step.open(context)
    for batch in _batches(pipeline.reader.read(shard), quarantine, read, shard.name):
        for step in steps:
            result = step.run(batch, step_stats[step.name])
            quarantine += result.rejected
            batch = result.rows
        for built in batch:
            stats.units_out.update(built.units)
            stats.adjustments.update(built.adjustments)
    written: dict[str, Any] = {}
    for step in steps:
        written.update(step.close())
    for rejected in quarantine:
        stats.units_quarantined.update(rejected.units)
        stats.reasons[f"{rejected.stage}/{rejected.code}"] += 1
    stats.rows = written["rows"]
    quarantine_file = None
    if quarantine:
        quarantine_file = f"quarantine/{shard.name}.jsonl"
        lines = [rejected.to_json(shard.split) for rejected in quarantine]
        write_text_atomic(out / quarantine_file, dumps_jsonl(lines))
    seconds = time.perf_counter() - started
    read.seconds = seconds - sum(s.seconds for s in step_stats.values())
    receipt = {
        "shard": shard.name,
        "split": shard.split,
        **written,
        "quarantine_file": quarantine_file,
        "stats": stats.to_json(),
        "steps": {"read": read.to_json()} | {name: s.to_json() for name, s in step_stats.items()},
        "seconds": round(seconds, 3),
    }
    write_text_atomic(receipt_path(out, shard.name), dumps_json(receipt))
    return receipt


def _batches(
    outcomes: Iterator[Built | Rejected], quarantine: list[Rejected], read: StepStats, shard: str
) -> Iterator[list[Built]]:
    """The reader's rows in batches of `BATCH_ROWS`; its rejections go to `quarantine`, and both
    are counted in `read` (the reader's own time is what the steps leave of the shard's)."""
    batch: list[Built] = []
    seen: set[str] = set()
    for outcome in outcomes:
        if isinstance(outcome, Rejected):
            quarantine.append(outcome)
            read.rejected[outcome.code] += 1
            continue
        read.rows_out += 1
        row_id = outcome.row["id"]
        if row_id in seen:
            raise RuntimeError(f"the reader produced row id {row_id!r} twice in {shard}")
        seen.add(row_id)
        batch.append(outcome)
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch
