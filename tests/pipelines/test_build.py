"""The build engine on Ray: Hub-ready output, counts that balance, resume and refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import load_dataset

from regionkit.builders.base import Built, Rejected, WorkItem
from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.coco import add_bad_coco_records
from regionkit.pipelines.build import BuildOptions, builder_pipeline, run_build
from regionkit.pipelines.inspect import inspect_dataset
from regionkit.pipelines.out_folder import OutFolderRefused
from regionkit.pipelines.shard_run import run_shard
from regionkit.pipelines.sharding import make_shards, shard_count
from regionkit.pipelines.storage import sha256_file


def _options(out: Path, **kwargs) -> BuildOptions:
    return BuildOptions(out=out, items_per_shard=2, progress=False, **kwargs)


def test_build_writes_a_hub_ready_dataset(ray_cluster, coco_sample, tmp_path):
    add_bad_coco_records(coco_sample)
    out = tmp_path / "built"
    report = run_build(CocoBuilder(coco_sample.annotations, coco_sample.images), _options(out))

    manifest = json.loads((out / "manifest.json").read_text())
    shards = manifest["splits"]["val2017"]["shards"]
    assert [s["file"] for s in shards] == [
        f"data/val2017-{i:05d}-of-00008.parquet" for i in range(8)
    ]
    for shard in shards:
        assert sha256_file(out / shard["file"]) == shard["sha256"]
    assert manifest["source_files"][0]["sha256"] == sha256_file(coco_sample.annotations)
    assert manifest["builders"][0]["version"] == CocoBuilder.version

    ds = load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert (
        list(ds) == ["val2017"] and ds["val2017"].num_rows == report.rows_per_split["val2017"] == 6
    )
    first = ds["val2017"][0]
    assert first["image"].size == (first["width"], first["height"])
    assert first["regions"][0]["mask"]["size"] == [first["height"], first["width"]]

    counts = manifest["counts"]["units"]
    for unit in ("image", "annotation"):
        assert counts[unit]["in"] == counts[unit]["out"] + counts[unit]["quarantined"]
    assert counts["image"]["quarantined"] == 4 and counts["annotation"]["quarantined"] == 11
    lines = [
        json.loads(line)
        for f in manifest["quarantine_files"]
        for line in (out / f).read_text().splitlines()
    ]
    assert sum(manifest["counts"]["quarantine_reasons"].values()) == len(lines) == 13
    assert all(line["reason"] and line["stage"] in {"index", "build"} for line in lines)

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-4.0\n")
    assert "path: data/val2017-*.parquet" in card and "@inproceedings{lin2014coco" in card
    adjustments = manifest["counts"]["adjustments"]
    assert adjustments["polygon_part_dropped"] > 0 and adjustments["mask_covers_no_pixel"] > 0
    assert f"- `polygon_part_dropped`: {adjustments['polygon_part_dropped']}" in card
    assert inspect_dataset(out).ok


def test_a_rerun_builds_nothing_and_changes_nothing(ray_cluster, coco_sample, tmp_path):
    out = tmp_path / "built"
    builder = CocoBuilder(coco_sample.annotations, coco_sample.images)
    run_build(builder, _options(out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    report = run_build(builder, _options(out))
    assert (report.shards_built, report.shards_skipped) == (0, 4)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_receipts_from_before_adjustments_were_counted_still_resume(
    ray_cluster, coco_sample, tmp_path
):
    out = tmp_path / "built"
    builder = CocoBuilder(coco_sample.annotations, coco_sample.images)
    run_build(builder, _options(out))
    for receipt in (out / "_progress").glob("val2017-*.json"):
        data = json.loads(receipt.read_text())
        del data["stats"]["adjustments"]
        receipt.write_text(json.dumps(data))
    report = run_build(builder, _options(out))
    assert (report.shards_built, report.stats.adjustments) == (0, {})
    assert "nothing to build" in report.format()


def test_a_damaged_shard_is_rebuilt(ray_cluster, coco_sample, tmp_path):
    out = tmp_path / "built"
    builder = CocoBuilder(coco_sample.annotations, coco_sample.images)
    run_build(builder, _options(out))
    shard = out / "data" / "val2017-00001-of-00004.parquet"
    good = shard.read_bytes()
    shard.write_bytes(good[:100])
    report = run_build(builder, _options(out))
    assert (report.shards_built, report.shards_skipped) == (1, 3)
    assert shard.read_bytes() == good


def test_different_inputs_in_the_same_folder_are_refused_unless_overwritten(
    ray_cluster, coco_sample, tmp_path
):
    out = tmp_path / "built"
    run_build(CocoBuilder(coco_sample.annotations, coco_sample.images), _options(out))
    other = CocoBuilder(coco_sample.annotations, coco_sample.images, split="minival")
    with pytest.raises(OutFolderRefused, match="--overwrite"):
        run_build(other, _options(out))
    run_build(other, _options(out, overwrite=True))
    assert sorted(p.name for p in (out / "data").iterdir())[0].startswith("minival-")
    assert not list((out / "data").glob("val2017-*"))


class _LosingBuilder(CocoBuilder):
    """Drops an annotation without quarantining it: the engine must notice."""

    def build_item(self, item: WorkItem) -> Iterator[Built | Rejected]:
        for outcome in super().build_item(item):
            if isinstance(outcome, Built) and outcome.row["regions"]:
                outcome.row["regions"].pop()
                outcome = Built(
                    outcome.row, {**outcome.units, "annotation": len(outcome.row["regions"])}
                )
            yield outcome


def test_an_input_lost_by_a_builder_fails_the_shard(coco_sample, tmp_path):
    builder = _LosingBuilder(coco_sample.annotations, coco_sample.images)
    shard = make_shards(builder.index())[0]
    with pytest.raises(RuntimeError, match="lost track of inputs"):
        run_shard(builder_pipeline(builder), shard, tmp_path)


@pytest.mark.parametrize(
    ("items", "per_shard", "expected"),
    [(0, 10, 1), (10, 10, 1), (11, 10, 2), (33, 10, 4), (65, 10, 8)],
)
def test_shard_counts_are_powers_of_two(items, per_shard, expected):
    assert shard_count(items, per_shard) == expected
