"""Running a pipeline over Ray into a resumable, Hub-ready output folder.

The driver plans (the reader cuts its input into shards), checks that `--out` can take the
build, and runs every unfinished shard as a Ray task; workers write their shards themselves and
return receipts. A receipt is a shard's completion marker, so a killed build rerun with the same
arguments redoes only shards without one and ends byte-identical to an uninterrupted build. The
driver writes the manifest and the dataset card last.

Output folder::

    data/<split>-NNNNN-of-MMMMM.parquet   the rows
    quarantine/*.jsonl                    every rejected input with its stage and reason
    manifest.json                         shards (rows, sha256), source files, steps, counts
    README.md                             the dataset card (Hub configs + dataset_info)
    _progress/                            the plan and per-shard receipts (resume state)
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from regionkit.builders.base import RegionBuilder
from regionkit.pipelines.card import render_card
from regionkit.pipelines.manifest import MANIFEST_FORMAT, build_manifest
from regionkit.pipelines.out_folder import check_out_folder, prepare_out, sweep_half_written
from regionkit.pipelines.ray_runtime import RaySession
from regionkit.pipelines.ray_tasks import RayTasks
from regionkit.pipelines.readers import BuilderReader, ReadPlan
from regionkit.pipelines.report import BuildReport
from regionkit.pipelines.scheduler import Schedule, ShardsFailed, run_shards
from regionkit.pipelines.shard_run import Pipeline, receipt_path
from regionkit.pipelines.sharding import DEFAULT_ITEMS_PER_SHARD, Shard
from regionkit.pipelines.stats import BuildStats
from regionkit.pipelines.step import StepStats
from regionkit.pipelines.storage import dumps_json, dumps_jsonl, sha256_file, write_text_atomic
from regionkit.pipelines.validate import ValidateRows


class BuildFailed(Exception):
    """The build could not finish; finished shards are kept and a rerun resumes from them.

    Attributes:
        kinds: failed shards per exception type (empty when the failure was not a shard's).
    """

    def __init__(self, message: str, kinds: Counter[str] | None = None) -> None:
        super().__init__(message)
        self.kinds = kinds or Counter()


class BuildInterrupted(Exception):
    """The user stopped the build (Ctrl-C); finished shards are kept, half-written files removed.

    Attributes:
        done: shards finished, counting those of earlier runs.
        total: shards planned; None when the build stopped before planning them.
    """

    def __init__(self, done: int = 0, total: int | None = None) -> None:
        self.done, self.total = done, total
        if total is None:
            message = "interrupted before any shard was built; rerun the same command to start"
        else:
            message = (
                f"interrupted: {done} of {total} shards done; rerun the same command to resume"
            )
        super().__init__(message)


@dataclass
class BuildOptions:
    """How to run a build.

    Attributes:
        out: the output folder (on a cluster, a filesystem every node sees).
        items_per_shard: work items (usually images) per shard when `shards` is not set.
        shards: shards per split; default is the power of two giving <= `items_per_shard` each.
        ray_address: a Ray cluster address; None uses `RAY_ADDRESS`, a running local cluster, or
            starts an embedded one.
        max_in_flight: shards submitted at once; default twice the cluster's CPUs.
        retries: reruns of a shard whose Ray worker, node or result was lost.
        shard_timeout: seconds a shard may run before it is stopped and reported; None: no limit.
        overwrite: replace a previous build of different inputs instead of refusing.
        progress: show a progress bar.
        name: the dataset's name in its card; default the output folder's name.
    """

    out: Path
    items_per_shard: int = DEFAULT_ITEMS_PER_SHARD
    shards: int | None = None
    ray_address: str | None = None
    max_in_flight: int | None = None
    retries: int = 2
    shard_timeout: float | None = None
    overwrite: bool = False
    progress: bool = True
    name: str | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)


def builder_pipeline(builder: RegionBuilder) -> Pipeline:
    """A source's files into regions: the builder, the record check, the writer."""
    return Pipeline(BuilderReader(builder), [ValidateRows()])


def run_build(builder: RegionBuilder, options: BuildOptions) -> BuildReport:
    """`builder_pipeline(builder)` run with `options`."""
    return run_pipeline(builder_pipeline(builder), options)


def run_pipeline(
    pipeline: Pipeline, options: BuildOptions, session: RaySession | None = None
) -> BuildReport:
    """Plan, run the unfinished shards on Ray, check the whole, write the manifest and the card.

    `session` is the link to Ray when the caller made one (to start actors the pipeline's steps
    share); by default the build makes its own from `options.ray_address`.

    Raises `OutFolderRefused` when `options.out` cannot take the build (before planning when the
    pipeline or its arguments differ from the build there), `BuildFailed` when a shard fails
    or inputs go missing, and `BuildInterrupted` on Ctrl-C, after removing half-written files.
    """
    started = time.perf_counter()
    out = options.out.resolve()
    head = _plan_head(pipeline)
    check_out_folder(out, pipeline.reader.input_folders(), head, options.overwrite)
    session = session or RaySession(options.ray_address)
    try:
        tasks = RayTasks(session)
        read_plan = pipeline.reader.plan(options.items_per_shard, options.shards, tasks)
        plan_seconds = time.perf_counter() - started
        plan = {**head, **_plan_body(pipeline, read_plan.shards)}
        prepare_out(out, plan, options.overwrite)
    except KeyboardInterrupt:
        session.leave()
        raise BuildInterrupted() from None
    try:
        with _plan_kept_out_of_gc():
            return _build(pipeline, read_plan, plan, options, session, (started, plan_seconds))
    except KeyboardInterrupt:
        session.leave()
        sweep_half_written(out)
        done = sum(receipt_path(out, shard.name).exists() for shard in read_plan.shards)
        raise BuildInterrupted(done, len(read_plan.shards)) from None


def _plan_head(pipeline: Pipeline) -> dict[str, Any]:
    """What a build is, known before planning: the format, the reader, the steps."""
    return {"format": MANIFEST_FORMAT, **pipeline.describe()}


def _plan_body(pipeline: Pipeline, shards: list[Shard]) -> dict[str, Any]:
    """The rest of the plan: the source files read (hashed) and the shards cut."""
    files = [
        {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in pipeline.reader.source_files()
    ]
    return {
        "source_files": files,
        "shards": {s.name: [s.items[0].key, s.items[-1].key] if s.items else [] for s in shards},
    }


def _finished(out: Path, shard: Shard) -> bool:
    """A shard is done when its receipt exists and its Parquet file still has the receipt's hash."""
    path = receipt_path(out, shard.name)
    if not path.exists():
        return False
    receipt = json.loads(path.read_text())
    data = out / receipt["file"]
    return data.exists() and sha256_file(data) == receipt["sha256"]


def _build(
    pipeline: Pipeline,
    read_plan: ReadPlan,
    plan: dict[str, Any],
    options: BuildOptions,
    session: RaySession,
    timing: tuple[float, float],
) -> BuildReport:
    """Run the planned shards not yet done, check the whole, write the manifest and the card.

    `timing` is (the build's start on `time.perf_counter`, seconds spent planning).
    """
    started, plan_seconds = timing
    out = options.out.resolve()
    shards = read_plan.shards
    plan_stats = BuildStats()
    plan_lines = []
    for split, rejected in read_plan.rejected:
        plan_stats.units_in.update(rejected.units)
        plan_stats.units_quarantined.update(rejected.units)
        plan_stats.reasons[f"{rejected.stage}/{rejected.code}"] += 1
        plan_lines.append(rejected.to_json(split))
    if plan_lines:
        write_text_atomic(out / "quarantine" / "index.jsonl", dumps_jsonl(plan_lines))

    todo = [s for s in shards if not _finished(out, s)]
    if todo:
        schedule = Schedule(
            options.max_in_flight,
            options.retries,
            options.shard_timeout,
            options.progress,
            f"{pipeline.name} {pipeline.reader.describe()['source']}",
        )
        try:
            run = replace(pipeline, run_id=uuid.uuid4().hex)
            run_shards(run, todo, out, schedule, session, done=len(shards) - len(todo))
        except ShardsFailed as failed:
            raise BuildFailed(str(failed), failed.kinds) from None
        finally:
            sweep_half_written(out)  # a worker that died mid-write leaves a temporary file
    _check_unique_ids(out, shards)

    receipts = [json.loads(receipt_path(out, s.name).read_text()) for s in shards]
    stats = sum((BuildStats.from_json(r["stats"]) for r in receipts), plan_stats)
    unbalanced = stats.unbalanced()
    if unbalanced:
        raise BuildFailed(f"inputs unaccounted for (in, out, quarantined): {unbalanced}")
    reader = pipeline.reader
    name = options.name or out.name
    manifest = build_manifest(
        plan, reader.builders(), reader.image_root(), receipts, stats, name, bool(plan_lines)
    )
    write_text_atomic(out / "manifest.json", dumps_json(manifest))
    write_text_atomic(out / "README.md", render_card(manifest, reader.sources()))
    built = {s.name for s in todo}
    this_run = [r for r in receipts if r["shard"] in built]
    steps: dict[str, StepStats] = {}
    for receipt in this_run:
        for step, counters in receipt["steps"].items():
            steps[step] = steps.get(step, StepStats()) + StepStats.from_json(counters)
    return BuildReport(
        out,
        stats,
        {split: s["rows"] for split, s in manifest["splits"].items()},
        len(todo),
        len(shards) - len(todo),
        sum(r["rows"] for r in this_run),
        steps,
        plan_seconds,
        time.perf_counter() - started,
    )


def _check_unique_ids(out: Path, shards: list[Shard]) -> None:
    """Row ids must be unique across the whole dataset, not only within a shard."""
    counts: Counter[str] = Counter()
    for shard in shards:
        path = out / "data" / f"{shard.name}.parquet"
        counts.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    duplicates = [row_id for row_id, n in counts.items() if n > 1]
    if duplicates:
        raise BuildFailed(f"row ids appear in more than one row: {duplicates[:10]}")


@contextmanager
def _plan_kept_out_of_gc() -> Iterator[None]:
    """Keep the cyclic collector from walking the objects that exist now until the block ends.

    A reader's plan can be millions of plain objects that live until the build ends; every full
    collection while shards run would walk them all again. They are still freed by reference
    counting.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
