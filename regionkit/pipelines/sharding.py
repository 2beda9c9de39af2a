"""Deterministic shards: each split's work items cut into contiguous runs, named for the Hub.

Shard counts per split are powers of two (unless set explicitly), because
`datasets.distributed.split_dataset_by_node` splits a streaming dataset by file only when the
file count is a multiple of the world size; powers of two divide the usual 1, 2, 4, 8, ... ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from regionkit.builders.base import SourceIndex, WorkItem

DEFAULT_ITEMS_PER_SHARD = 1000


@dataclass(frozen=True)
class Shard:
    """A run of work items of one split that becomes one Parquet file."""

    split: str
    index: int
    count: int
    items: tuple[WorkItem, ...]

    @property
    def name(self) -> str:
        """`<split>-NNNNN-of-MMMMM`, the Hub's shard naming."""
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}"

    @property
    def data_path(self) -> str:
        return f"data/{self.name}.parquet"


def shard_count(num_items: int, items_per_shard: int) -> int:
    """The smallest power of two giving at most `items_per_shard` items per shard."""
    needed = max(1, math.ceil(num_items / items_per_shard))
    return 1 << (needed - 1).bit_length()


def make_shards(
    index: SourceIndex, items_per_shard: int = DEFAULT_ITEMS_PER_SHARD, shards: int | None = None
) -> list[Shard]:
    """Cut each split's items, in index order, into `shards` or a power-of-two count of shards."""
    if items_per_shard < 1:
        raise ValueError(f"items_per_shard must be >= 1, got {items_per_shard}")
    if shards is not None and shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    result = []
    for split in sorted(index.items):
        items = index.items[split]
        count = shards if shards is not None else shard_count(len(items), items_per_shard)
        for i in range(count):
            start, stop = len(items) * i // count, len(items) * (i + 1) // count
            result.append(Shard(split, i, count, tuple(items[start:stop])))
    return result
