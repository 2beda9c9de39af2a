"""Where a pipeline's rows come from: source files through a builder, or built datasets.

A reader plans on the driver (cheaply: shards of work items, and the inputs it could reject
without reading them) and reads on workers, one shard at a time, yielding `Built` rows and
`Rejected` inputs. Every work item declares the units it stands for, so the engine can check
`in = out + quarantined` for each shard whatever the steps after the reader do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from regionkit.builders.base import Built, RegionBuilder, Rejected, WorkItem
from regionkit.builders.files import paused_gc
from regionkit.builders.tasks import IN_PROCESS, Tasks
from regionkit.catalog.sources import Source, get_source
from regionkit.pipelines.inspect import read_manifest
from regionkit.pipelines.sharding import Shard, make_shards

READ_BATCH_ROWS = 256
"""Rows read from an input shard at a time: a dataset input is never held whole."""

ROW_UNIT = "row"
"""The unit of a pipeline over a built dataset: one input row."""


@dataclass
class ReadPlan:
    """The shards to run and the inputs rejected while planning, with their splits."""

    shards: list[Shard]
    rejected: list[tuple[str | None, Rejected]] = field(default_factory=list)


class Reader(ABC):
    """Base class of readers; a subclass plans shards on the driver and reads them on workers."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the reader is and its arguments: the head of the plan, known before planning."""

    @abstractmethod
    def source_files(self) -> list[Path]:
        """Files whose content determines the output (hashed into the plan)."""

    @abstractmethod
    def input_folders(self) -> list[Path]:
        """Folders the build reads: `--out` may not be one of them."""

    @abstractmethod
    def sources(self) -> list[Source]:
        """The catalog sources behind the rows (licenses and citations for the card)."""

    @abstractmethod
    def image_root(self) -> str | None:
        """The folder image paths lie under, for remapping; None when there is no single one."""

    @abstractmethod
    def builders(self) -> list[dict[str, Any]]:
        """The builders the rows come from, as the manifest records them."""

    @abstractmethod
    def plan(self, items_per_shard: int, shards: int | None, tasks: Tasks = IN_PROCESS) -> ReadPlan:
        """Cut the input into shards (driver), running any bulk parsing as `tasks`."""

    @abstractmethod
    def read(self, shard: Shard) -> Iterator[Built | Rejected]:
        """One shard's rows and rejected inputs (worker)."""


class BuilderReader(Reader):
    """Source files read by a builder: its index planned into shards, its items built on workers.

    Args:
        builder: the source's builder.
    """

    def __init__(self, builder: RegionBuilder) -> None:
        self.builder = builder

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.builder.source,
            "builder_version": self.builder.version,
            "arguments": self.builder.arguments(),
        }

    def source_files(self) -> list[Path]:
        return self.builder.source_files()

    def input_folders(self) -> list[Path]:
        return [self.builder.image_root(), *{path.parent for path in self.source_files()}]

    def sources(self) -> list[Source]:
        return [self.builder.catalog]

    def image_root(self) -> str | None:
        return str(self.builder.image_root())

    def builders(self) -> list[dict[str, Any]]:
        builder = self.builder
        return [
            {
                "source": builder.source,
                "class": f"{type(builder).__module__}:{type(builder).__name__}",
                "version": builder.version,
                "arguments": builder.arguments(),
            }
        ]

    def plan(self, items_per_shard: int, shards: int | None, tasks: Tasks = IN_PROCESS) -> ReadPlan:
        with paused_gc():  # an index is millions of plain objects: no cycles to collect
            index = self.builder.index(tasks)
        return ReadPlan(make_shards(index, items_per_shard, shards), index.rejected)

    def read(self, shard: Shard) -> Iterator[Built | Rejected]:
        return self.builder.build_items(list(shard.items))


class DatasetReader(Reader):
    """The rows of one or more regionkit datasets, streamed shard by shard, never whole.

    Each input shard becomes one output shard of the same split, so the output keeps the
    input's sharding (and its power-of-two counts, for one input). A row is one unit (`row`).

    Args:
        paths: dataset folders written by regionkit (each with its manifest.json).
    """

    def __init__(self, paths: list[Path]) -> None:
        if not paths:
            raise ValueError("DatasetReader needs at least one dataset folder")
        self.paths = [Path(p).resolve() for p in paths]
        self.manifests = [read_manifest(path) for path in self.paths]

    def describe(self) -> dict[str, Any]:
        return {"source": "datasets", "arguments": {"inputs": [str(p) for p in self.paths]}}

    def source_files(self) -> list[Path]:
        return [path / "manifest.json" for path in self.paths]

    def input_folders(self) -> list[Path]:
        return list(self.paths)

    def sources(self) -> list[Source]:
        names = {b["source"] for m in self.manifests for b in m["builders"]}
        return [get_source(name) for name in sorted(names)]

    def image_root(self) -> str | None:
        roots = {m.get("image_root") for m in self.manifests}
        return roots.pop() if len(roots) == 1 else None

    def builders(self) -> list[dict[str, Any]]:
        return [builder for manifest in self.manifests for builder in manifest["builders"]]

    def plan(self, items_per_shard: int, shards: int | None, tasks: Tasks = IN_PROCESS) -> ReadPlan:
        """One shard per input shard; `items_per_shard`, `shards` and `tasks` do not apply."""
        files: dict[str, list[WorkItem]] = {}
        for path, manifest in zip(self.paths, self.manifests, strict=True):
            for split, entry in manifest["splits"].items():
                for shard in entry["shards"]:
                    item = WorkItem(
                        split, str(path / shard["file"]), None, {ROW_UNIT: shard["rows"]}
                    )
                    files.setdefault(split, []).append(item)
        planned = []
        for split in sorted(files):
            items = files[split]
            planned += [Shard(split, i, len(items), (item,)) for i, item in enumerate(items)]
        return ReadPlan(planned)

    def read(self, shard: Shard) -> Iterator[Built | Rejected]:
        for item in shard.items:
            parquet = pq.ParquetFile(item.key)
            for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS):
                for row in batch.to_pylist():
                    yield Built(row, {ROW_UNIT: 1})
