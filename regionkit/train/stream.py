"""Training rows streamed from regionkit datasets: split across ranks and workers, mixed by
weight, shuffled through a buffer, the same for the same seed, resumable at a position.

The unit of work is a Parquet row group (256 rows as regionkit writes them), listed from the
shards' footers. Each epoch the units of each dataset are shuffled by (seed, epoch) and dealt
round-robin to the `world_size * num_workers` readers, so readers never share a unit and
together read every unit once; a reader reads only its own units. A dataset with fewer row
groups than readers (a small one, or many GPUs) has each group dealt as interleaved parts,
row i of a group going to part i mod parts, so every reader still gets rows.

Each reader then draws the dataset of its next row by weight among those it still has rows
of, and passes rows through a shuffle buffer, every draw from a generator seeded by (seed,
epoch, reader): a rerun yields the same rows in the same order, and a resumed stream passes
over the batches a DataLoader already took (see `resume_order`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info


@dataclass(frozen=True)
class StreamSource:
    """A dataset to stream and how often to draw from it.

    Attributes:
        path: a dataset folder written by regionkit (with its manifest.json).
        weight: relative chance a reader's next row comes from this dataset.
        split: the split to read.
    """

    path: Path
    weight: float = 1.0
    split: str = "train"


Unit = tuple[str, int, int]
"""(Parquet file, row group index, rows)."""

Part = tuple[str, int, int, int, int]
"""(Parquet file, row group index, rows, part, parts): the group's rows part, part + parts, ..."""


def list_units(source: StreamSource) -> list[Unit]:
    """Every row group of a dataset's split with its row count (from the footers), in shard
    order."""
    folder = Path(source.path)
    manifest = json.loads((folder / "manifest.json").read_text())
    split = manifest["splits"].get(source.split)
    if split is None:
        raise ValueError(
            f"{folder}: no split {source.split!r}; it has {sorted(manifest['splits'])}"
        )
    units = []
    for shard in split["shards"]:
        file = str(folder / shard["file"])
        footer = pq.ParquetFile(file).metadata
        units += [(file, g, footer.row_group(g).num_rows) for g in range(footer.num_row_groups)]
    return units


class RowStream(IterableDataset):
    """Rows (or whatever `transform` makes of them) for one rank, split among its workers.

    Args:
        sources: the datasets and their weights.
        seed: fixes every shuffle and draw.
        rank, world_size: this process's place among the training processes (default: from
            `torch.distributed` when it is initialised, else 0 of 1).
        buffer_size: rows held for shuffling (1: no shuffling beyond the units' order).
        transform: applied to each row in the worker (decode the image, run the processor).
    """

    def __init__(
        self,
        sources: list[StreamSource],
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        buffer_size: int = 1024,
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if not sources:
            raise ValueError("RowStream needs at least one source")
        if any(not s.weight > 0 for s in sources):
            raise ValueError(f"source weights must be > 0, got {[s.weight for s in sources]}")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = (
            rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        )
        self.world_size = (
            world_size
            if world_size is not None
            else (torch.distributed.get_world_size() if distributed else 1)
        )
        self.sources = sources
        self.units = [list_units(source) for source in sources]
        self.seed = seed
        self.buffer_size = max(1, buffer_size)
        self.transform = transform
        self.epoch = 0
        self.skip_batches = 0
        self.batch_size = 1

    def set_epoch(self, epoch: int, skip_batches: int = 0, batch_size: int = 1) -> None:
        """The epoch to stream next, and how many batches of `batch_size` rows a DataLoader
        already took from it (to resume with the batch it would have taken next)."""
        self.epoch, self.skip_batches, self.batch_size = epoch, skip_batches, batch_size

    def _dealt(self, readers: int) -> list[list[Part]]:
        """Each dataset's parts this epoch in the order they are dealt to `readers`: reader
        r reads parts r, r + readers, ..."""
        dealt = []
        for index, units in enumerate(self.units):
            order = list(units)
            random.Random(f"{self.seed}/{self.epoch}/{index}").shuffle(order)
            dealt.append(_parts(order, readers))
        return dealt

    def reader_rows(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """The rows reader (rank, worker) yields this epoch, in order; plain Python, no torch
        worker needed (tests call it for every reader)."""
        reader = self.rank * num_workers + worker
        readers = self.world_size * num_workers
        streams = [_read(parts[reader::readers]) for parts in self._dealt(readers)]
        chooser = random.Random(f"{self.seed}/{self.epoch}/reader{reader}")
        weights = [source.weight for source in self.sources]
        live = list(range(len(streams)))
        buffer: list[dict[str, Any]] = []
        while live:
            index = chooser.choices(live, weights=[weights[i] for i in live])[0]
            row = next(streams[index], None)
            if row is None:
                live.remove(index)
                continue
            buffer.append(row)
            if len(buffer) >= self.buffer_size:
                yield buffer.pop(chooser.randrange(len(buffer)))
        chooser.shuffle(buffer)
        yield from buffer

    def reader_batches(self, num_workers: int) -> list[int]:
        """The batches of `batch_size` each of this rank's workers gives this epoch (the last
        one short), counted from the row groups' footers without reading a row."""
        readers = self.world_size * num_workers
        dealt = self._dealt(readers)
        first = self.rank * num_workers
        rows = [
            sum(_rows(part) for parts in dealt for part in parts[reader::readers])
            for reader in range(first, first + num_workers)
        ]
        return [-(-count // self.batch_size) for count in rows]

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = resume_order(self.reader_batches(num_workers), self.skip_batches)
        if worker >= len(order):
            return  # this epoch's other readers hold every batch still to come
        reader, given = order[worker]
        for position, row in enumerate(self.reader_rows(reader, num_workers)):
            if position < given * self.batch_size:
                continue
            yield row if self.transform is None else self.transform(row)


def resume_order(batches: list[int], taken: int) -> list[tuple[int, int]]:
    """Which reader each worker of a resumed DataLoader plays, and how many batches that
    reader had given, so the loader goes on with the batch an uninterrupted one takes next.

    A DataLoader takes batches from its workers in turn, passing over a worker that has run
    out; reader w, the epoch's worker w, gives `batches[w]`. After `taken` batches the readers
    with batches left, from the one whose turn it is, are dealt to the resumed loader's
    workers in that order (it starts with worker 0); its remaining workers get nothing and
    drop out at once, leaving the same turns.
    """
    if taken > sum(batches):
        raise ValueError(
            f"the stream position says {taken} batches were taken this epoch, but its readers "
            f"hold {sum(batches)}: the datasets, the batch size or the workers changed since "
            "the checkpoint"
        )
    given, turn = [0] * len(batches), 0
    for _ in range(taken):
        while given[turn] == batches[turn]:
            turn = (turn + 1) % len(batches)
        given[turn] += 1
        turn = (turn + 1) % len(batches)
    readers = [(turn + step) % len(batches) for step in range(len(batches))]
    return [(r, given[r]) for r in readers if given[r] < batches[r]]


def _parts(units: list[Unit], readers: int) -> list[Part]:
    """The units as whole groups, or split in as many parts as it takes for each of the
    `readers` to have one when there are fewer groups than readers."""
    parts = max(1, -(-readers // max(1, len(units))))
    return [
        (file, group, rows, part, parts) for file, group, rows in units for part in range(parts)
    ]


def _rows(part: Part) -> int:
    """The rows of a part: its group's rows part, part + parts, ..."""
    _, _, rows, part_index, parts = part
    return len(range(part_index, rows, parts))


def _read(parts: list[Part]) -> Iterator[dict[str, Any]]:
    """The rows of `parts`, a row group at a time (a file is opened per unit: the units of a
    reader are spread over many files, and keeping them all open would hold their handles)."""
    for file, group, _, part, count in parts:
        table = pq.ParquetFile(file).read_row_group(group)
        if count > 1:
            table = table.take(list(range(part, table.num_rows, count)))
        yield from table.to_pylist()
