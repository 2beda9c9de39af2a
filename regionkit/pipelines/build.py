"""Running a builder over Ray into a resumable, Hub-ready output folder.

The driver indexes the source, cuts the work into shards, and runs every unfinished shard as a
Ray task (`build_shard`); it writes each result as it arrives: the Parquet file, the shard's
quarantine lines, then a receipt in `_progress/`. A receipt is the shard's completion marker, so
a killed build rerun with the same arguments redoes only shards without one and ends
byte-identical to an uninterrupted build. The manifest and the dataset card are written last.

Output folder::

    data/<split>-NNNNN-of-MMMMM.parquet   the rows
    quarantine/*.jsonl                    every rejected input with its stage and reason
    manifest.json                         shards (rows, sha256), source files, builder, counts
    README.md                             the dataset card (Hub configs + dataset_info)
    _progress/                            the plan and per-shard receipts (resume state)
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray
from tqdm.auto import tqdm

import regionkit
from regionkit.builders.base import RegionBuilder, SourceIndex
from regionkit.catalog.schema import ARROW_SCHEMA
from regionkit.pipelines.card import render_card
from regionkit.pipelines.out_folder import (
    check_out_folder,
    prepare_out,
    sweep_half_written,
)
from regionkit.pipelines.ray_runtime import ensure_ray
from regionkit.pipelines.shard_build import ShardResult, build_shard
from regionkit.pipelines.sharding import DEFAULT_ITEMS_PER_SHARD, Shard, make_shards
from regionkit.pipelines.stats import BuildStats
from regionkit.pipelines.storage import (
    dumps_json,
    dumps_jsonl,
    sha256_bytes,
    sha256_file,
    write_bytes_atomic,
    write_text_atomic,
)

MANIFEST_FORMAT = "regionkit.dataset/1"


class BuildFailed(Exception):
    """The build could not finish; finished shards are kept and a rerun resumes from them."""


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
        out: the output folder.
        items_per_shard: work items (usually images) per shard when `shards` is not set.
        shards: shards per split; default is the power of two giving <= `items_per_shard` each.
        ray_address: a Ray cluster address; None uses `RAY_ADDRESS`, a running local cluster, or
            starts an embedded one.
        max_in_flight: shards submitted at once; default twice the cluster's CPUs.
        overwrite: replace a previous build of different inputs instead of refusing.
        progress: show a progress bar.
        name: the dataset's name in its card; default the output folder's name.
    """

    out: Path
    items_per_shard: int = DEFAULT_ITEMS_PER_SHARD
    shards: int | None = None
    ray_address: str | None = None
    max_in_flight: int | None = None
    overwrite: bool = False
    progress: bool = True
    name: str | None = None


@dataclass
class BuildReport:
    """What a build did, for the terminal and for tests."""

    out: Path
    stats: BuildStats
    rows_per_split: dict[str, int]
    shards_built: int
    shards_skipped: int
    rows_built: int
    index_seconds: float
    seconds: float

    def format(self) -> str:
        built = (
            f"{self.rows_built} rows built at {_rate(self.rows_built, self.seconds)} rows/s"
            if self.shards_built
            else "nothing to build"
        )
        lines = [f"built {self.out}"]
        lines.append(
            f"  shards: {self.shards_built} built, {self.shards_skipped} already done "
            f"(index {self.index_seconds:.1f}s, total {self.seconds:.1f}s, {built})"
        )
        for split, rows in self.rows_per_split.items():
            lines.append(f"  {split}: {rows} rows")
        for kind, c in self.stats.to_json()["units"].items():
            lines.append(
                f"  {_plural(kind)}: {c['in']} in = {c['out']} out + {c['quarantined']} quarantined"
            )
        for code, n in _most_first(self.stats.reasons):
            lines.append(f"    quarantined {n} x {code}")
        if self.stats.adjustments:
            lines.append("  kept with a change:")
            for code, n in _most_first(self.stats.adjustments):
                lines.append(f"    {n} x {code}")
        return "\n".join(lines)


def _rate(count: int, seconds: float) -> str:
    """`count / seconds` with the digits that matter: 1,765, or 0.41 rather than a rounded 0."""
    rate = count / max(seconds, 1e-9)
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


def _most_first(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _plural(unit: str) -> str:
    """`image` -> `images`, `box` -> `boxes`: unit names read as English in the report."""
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def _source_files(builder: RegionBuilder) -> list[dict[str, Any]]:
    return [
        {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in builder.source_files()
    ]


def _plan_head(builder: RegionBuilder) -> dict[str, Any]:
    """What a build is, known before indexing: the format, the builder and its arguments."""
    return {
        "format": MANIFEST_FORMAT,
        "source": builder.source,
        "builder_version": builder.version,
        "arguments": builder.arguments(),
    }


def _plan_body(builder: RegionBuilder, shards: list[Shard]) -> dict[str, Any]:
    """The rest of the plan: the source files read (hashed) and the shards cut."""
    return {
        "source_files": _source_files(builder),
        "shards": {s.name: [s.items[0].key, s.items[-1].key] if s.items else [] for s in shards},
    }


def _receipt_path(out: Path, shard: Shard) -> Path:
    return out / "_progress" / f"{shard.name}.json"


def _finished(out: Path, shard: Shard) -> bool:
    """A shard is done when its receipt exists and its Parquet file still has the receipt's hash."""
    receipt_path = _receipt_path(out, shard)
    if not receipt_path.exists():
        return False
    receipt = json.loads(receipt_path.read_text())
    data = out / receipt["file"]
    return data.exists() and sha256_file(data) == receipt["sha256"]


def _write_result(out: Path, shard: Shard, result: ShardResult) -> None:
    write_bytes_atomic(out / shard.data_path, result.parquet)
    quarantine_file = None
    if result.quarantine:
        quarantine_file = f"quarantine/{shard.name}.jsonl"
        write_text_atomic(out / quarantine_file, dumps_jsonl(result.quarantine))
    receipt = {
        "shard": shard.name,
        "split": shard.split,
        "file": shard.data_path,
        "rows": result.stats.rows,
        "bytes": len(result.parquet),
        "sha256": sha256_bytes(result.parquet),
        "quarantine_file": quarantine_file,
        "stats": result.stats.to_json(),
    }
    write_text_atomic(_receipt_path(out, shard), dumps_json(receipt))


def _run_shards(
    builder: RegionBuilder, shards: list[Shard], out: Path, options: BuildOptions, done: int
) -> None:
    """Run `shards` as Ray tasks, writing each result as it lands; raise if any failed.

    On Ctrl-C the shards in flight are cancelled and, when this build connected to Ray, it
    leaves at once: an embedded cluster shuts down with it, so no worker outlives the build; a
    shared cluster only loses this driver.
    """
    connected_here = ensure_ray(options.ray_address)
    max_in_flight = options.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    remote_build = ray.remote(num_cpus=1)(build_shard)
    builder_ref, schema_ref = ray.put(builder), ray.put(ARROW_SCHEMA)
    pending, in_flight = deque(shards), {}
    failures: list[str] = []
    bar = tqdm(
        total=len(shards) + done,
        initial=done,
        unit="shard",
        disable=not options.progress,
        desc=f"build {builder.source}",
    )
    try:
        while pending or in_flight:
            while pending and len(in_flight) < max_in_flight and not failures:
                shard = pending.popleft()
                in_flight[remote_build.remote(builder_ref, shard, schema_ref)] = shard
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            shard = in_flight.pop(ready[0])
            try:
                result: ShardResult = ray.get(ready[0])
            except ray.exceptions.RayError as error:
                failures.append(f"{shard.name}: {error}")
                continue
            _write_result(out, shard, result)
            bar.update(1)
            bar.set_postfix(rows=result.stats.rows, shard_s=f"{result.seconds:.1f}")
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        if connected_here:
            ray.shutdown()
        raise
    finally:
        bar.close()
    if failures:
        raise BuildFailed(
            f"{len(failures)} shard(s) failed; finished shards are kept and a rerun resumes:\n"
            + "\n".join(failures)
        )


def _check_unique_ids(out: Path, shards: list[Shard]) -> None:
    """Row ids must be unique across the whole dataset, not only within a shard."""
    counts: Counter[str] = Counter()
    for shard in shards:
        counts.update(pq.read_table(out / shard.data_path, columns=["id"]).column("id").to_pylist())
    duplicates = [row_id for row_id, n in counts.items() if n > 1]
    if duplicates:
        raise BuildFailed(f"row ids appear in more than one row: {duplicates[:10]}")


@contextmanager
def _index_kept_out_of_gc() -> Iterator[None]:
    """Keep the cyclic collector from walking the objects that exist now until the block ends.

    A source's index is millions of plain objects that live until the build ends; every full
    collection while shards are sent and results written would walk them all again (about a
    fifth of a RefCOCO-sized build). They are still freed by reference counting.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_build(builder: RegionBuilder, options: BuildOptions) -> BuildReport:
    """Index, shard, build the unfinished shards on Ray, then write the manifest and the card.

    Raises `OutFolderRefused` when `options.out` cannot take the build (before indexing when
    the builder or its arguments differ from the build there), and `BuildInterrupted` on
    Ctrl-C, after removing half-written files.
    """
    started = time.perf_counter()
    out = options.out.resolve()
    inputs = [builder.image_root(), *{path.parent for path in builder.source_files()}]
    check_out_folder(out, inputs, _plan_head(builder), options.overwrite)
    try:
        index = builder.index()
        index_seconds = time.perf_counter() - started
        shards = make_shards(index, options.items_per_shard, options.shards)
        plan = {**_plan_head(builder), **_plan_body(builder, shards)}
        prepare_out(out, plan, options.overwrite)
    except KeyboardInterrupt:
        raise BuildInterrupted() from None
    try:
        with _index_kept_out_of_gc():
            return _build_planned(builder, index, shards, plan, options, (started, index_seconds))
    except KeyboardInterrupt:
        sweep_half_written(out)
        done = sum(_receipt_path(out, shard).exists() for shard in shards)
        raise BuildInterrupted(done, len(shards)) from None


def _build_planned(
    builder: RegionBuilder,
    index: SourceIndex,
    shards: list[Shard],
    plan: dict[str, Any],
    options: BuildOptions,
    timing: tuple[float, float],
) -> BuildReport:
    """Build the planned shards not yet done, check the whole, write the manifest and card.

    `timing` is (the build's start on `time.perf_counter`, seconds spent indexing).
    """
    started, index_seconds = timing
    out = options.out.resolve()
    index_stats = BuildStats()
    index_lines = []
    for split, rejected in index.rejected:
        index_stats.units_in.update(rejected.units)
        index_stats.units_quarantined.update(rejected.units)
        index_stats.reasons[f"{rejected.stage}/{rejected.code}"] += 1
        index_lines.append(rejected.to_json(split))
    if index_lines:
        write_text_atomic(out / "quarantine" / "index.jsonl", dumps_jsonl(index_lines))

    todo = [s for s in shards if not _finished(out, s)]
    if todo:
        _run_shards(builder, todo, out, options, done=len(shards) - len(todo))
    _check_unique_ids(out, shards)

    receipts = [json.loads(_receipt_path(out, s).read_text()) for s in shards]
    stats = sum((BuildStats.from_json(r["stats"]) for r in receipts), index_stats)
    unbalanced = stats.unbalanced()
    if unbalanced:
        raise BuildFailed(f"inputs unaccounted for (in, out, quarantined): {unbalanced}")
    name = options.name or out.name
    manifest = build_manifest(builder, plan, receipts, stats, name, bool(index_lines))
    write_text_atomic(out / "manifest.json", dumps_json(manifest))
    write_text_atomic(out / "README.md", render_card(manifest, [builder.catalog]))
    rows_per_split = {split: s["rows"] for split, s in manifest["splits"].items()}
    built = {s.name for s in todo}
    return BuildReport(
        out,
        stats,
        rows_per_split,
        len(todo),
        len(shards) - len(todo),
        sum(r["rows"] for r in receipts if r["shard"] in built),
        index_seconds,
        time.perf_counter() - started,
    )


def build_manifest(
    builder: RegionBuilder,
    plan: dict[str, Any],
    receipts: list[dict[str, Any]],
    stats: BuildStats,
    name: str,
    has_index_quarantine: bool,
) -> dict[str, Any]:
    """The manifest: what was read, what was written (with hashes), and the counts."""
    splits: dict[str, dict[str, Any]] = {}
    for r in receipts:
        split = splits.setdefault(r["split"], {"rows": 0, "shards": []})
        split["rows"] += r["rows"]
        split["shards"].append(
            {"file": r["file"], "rows": r["rows"], "bytes": r["bytes"], "sha256": r["sha256"]}
        )
    quarantine_files = ["quarantine/index.jsonl"] if has_index_quarantine else []
    quarantine_files += [r["quarantine_file"] for r in receipts if r["quarantine_file"]]
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "regionkit_version": regionkit.__version__,
        "builders": [
            {
                "source": builder.source,
                "class": f"{type(builder).__module__}:{type(builder).__name__}",
                "version": builder.version,
                "arguments": plan["arguments"],
            }
        ],
        "recipe": {"name": "regions", "steps": ["index", "build", "validate", "write"]},
        "image_root": str(builder.image_root()),
        "source_files": plan["source_files"],
        "splits": splits,
        "counts": stats.to_json(),
        "quarantine_files": quarantine_files,
    }
