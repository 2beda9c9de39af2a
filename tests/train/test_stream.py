"""The row stream: every row exactly once per epoch across ranks and workers, the same order
for the same seed, datasets mixed by weight, and a resumed stream continuing where it stopped.

The datasets are written as regionkit writes them: Parquet shards of row groups, listed by
shard in `manifest.json` (`splits -> <split> -> shards -> file`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from regionkit.train.stream import RowStream, StreamSource


def _dataset(folder: Path, name: str, shards: int, groups: int, rows_per_group: int) -> Path:
    shard_entries = []
    for s in range(shards):
        ids = [f"{name}:{s}:{i}" for i in range(groups * rows_per_group)]
        file = f"data/train-{s:05d}-of-{shards:05d}.parquet"
        (folder / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": ids}), folder / file, row_group_size=rows_per_group)
        shard_entries.append({"file": file, "rows": len(ids)})
    manifest = {
        "splits": {"train": {"rows": shards * groups * rows_per_group, "shards": shard_entries}}
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _ids(rows) -> list[str]:
    return [row["id"] for row in rows]


@pytest.mark.parametrize(
    ("shards", "groups", "rows_per_group"),
    [(3, 5, 3), (1, 1, 9), (1, 3, 2)],  # more groups than readers; one group; 3 for 4 readers
)
def test_two_ranks_with_two_workers_each_read_every_row_once(
    tmp_path, shards, groups, rows_per_group
):
    folder = _dataset(tmp_path / "a", "a", shards, groups, rows_per_group)
    every = [f"a:{s}:{i}" for s in range(shards) for i in range(groups * rows_per_group)]
    for epoch in (0, 1):
        seen, empty = [], 0
        for rank in (0, 1):
            stream = RowStream(
                [StreamSource(folder)], seed=3, rank=rank, world_size=2, buffer_size=4
            )
            stream.set_epoch(epoch)
            for worker in (0, 1):
                rows = _ids(stream.reader_rows(worker, 2))
                seen += rows
                empty += not rows
        assert sorted(seen) == sorted(every)  # none lost, none twice
        assert empty == 0  # and every reader has rows to give


def test_the_same_seed_gives_the_same_order_and_epochs_differ(tmp_path):
    folder = _dataset(tmp_path / "a", "a", shards=2, groups=4, rows_per_group=5)

    def order(seed: int, epoch: int) -> list[str]:
        stream = RowStream([StreamSource(folder)], seed=seed, buffer_size=8)
        stream.set_epoch(epoch)
        return _ids(stream)

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    assert sorted(order(1, 0)) == sorted(order(2, 1))


def test_datasets_are_mixed_by_weight(tmp_path):
    a = _dataset(tmp_path / "a", "a", shards=2, groups=10, rows_per_group=20)
    b = _dataset(tmp_path / "b", "b", shards=2, groups=10, rows_per_group=20)
    stream = RowStream(
        [StreamSource(a, weight=3), StreamSource(b, weight=1)], seed=0, buffer_size=1
    )
    first = _ids(stream)[:200]
    share = sum(row.startswith("a:") for row in first) / len(first)
    assert 0.68 < share < 0.82  # 3 : 1 while both last


def test_a_resumed_stream_continues_with_the_same_rows(tmp_path):
    folder = _dataset(tmp_path / "a", "a", shards=2, groups=3, rows_per_group=4)
    whole = RowStream([StreamSource(folder)], seed=5, buffer_size=6)
    whole.set_epoch(2)
    resumed = RowStream([StreamSource(folder)], seed=5, buffer_size=6)
    resumed.set_epoch(2, skip_batches=3, batch_size=2)
    assert _ids(resumed) == _ids(whole)[6:]


def test_a_resumed_loader_with_workers_gives_the_same_next_batches(tmp_path):
    folder = _dataset(tmp_path / "a", "a", shards=2, groups=4, rows_per_group=3)

    def batches(skip: int) -> list[list[str]]:
        stream = RowStream([StreamSource(folder)], seed=2, buffer_size=3)
        stream.set_epoch(1, skip_batches=skip, batch_size=2)
        loader = DataLoader(stream, batch_size=2, num_workers=2, collate_fn=_ids)
        return list(loader)

    whole = batches(0)
    assert batches(3) == whole[3:]  # after 3 batches: worker 0 gave 2, worker 1 gave 1


@pytest.mark.parametrize(("batch_size", "sizes"), [(1, [1] * 9), (2, [2, 2, 2, 1, 2])])
def test_a_resumed_loader_goes_on_after_a_worker_runs_out(tmp_path, batch_size, sizes):
    # 3 groups for 2 workers: worker 0 reads two and worker 1 one, so the loader takes the
    # last batches from worker 0 alone; the shorter last batches shift the turns too
    folder = _dataset(tmp_path / "a", "a", shards=1, groups=3, rows_per_group=3)

    def batches(skip: int) -> list[list[str]]:
        stream = RowStream([StreamSource(folder)], seed=0, buffer_size=1)
        stream.set_epoch(0, skip_batches=skip, batch_size=batch_size)
        loader = DataLoader(stream, batch_size=batch_size, num_workers=2, collate_fn=_ids)
        return list(loader)

    whole = batches(0)
    assert sorted(row for batch in whole for row in batch) == [f"a:0:{i}" for i in range(9)]
    assert [len(b) for b in whole] == sizes  # worker 1's short batch, then worker 0 alone
    for skip in range(len(whole) + 1):
        assert batches(skip) == whole[skip:], skip


def test_resume_order_deals_the_readers_left_in_their_turn():
    from regionkit.train.stream import resume_order

    # readers give 3 and 1 batches: taken 0,1,0,0 in that order
    assert resume_order([3, 1], 0) == [(0, 0), (1, 0)]
    assert resume_order([3, 1], 1) == [(1, 0), (0, 1)]
    assert resume_order([3, 1], 2) == [(0, 1)]
    assert resume_order([3, 1], 3) == [(0, 2)]
    assert resume_order([3, 1], 4) == []
    with pytest.raises(ValueError, match="the workers changed since the checkpoint"):
        resume_order([3, 1], 5)


def test_dataloader_workers_share_the_rows_without_overlap(tmp_path):
    folder = _dataset(tmp_path / "a", "a", shards=2, groups=4, rows_per_group=3)
    stream = RowStream([StreamSource(folder)], seed=0, buffer_size=2)
    loader = DataLoader(stream, batch_size=None, num_workers=2)
    ids = [row["id"] for row in loader]
    assert sorted(ids) == sorted(f"a:{s}:{i}" for s in range(2) for i in range(12))
    expected = _ids(stream.reader_rows(0, 2)) + _ids(stream.reader_rows(1, 2))
    assert sorted(ids) == sorted(expected)
