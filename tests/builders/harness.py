"""Building a source without Ray, the two ways the builder tests need: item by item, or by shard."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from regionkit.builders.base import Built, RegionBuilder, Rejected
from regionkit.cli import main
from regionkit.pipelines.build import builder_pipeline
from regionkit.pipelines.shard_run import run_shard
from regionkit.pipelines.sharding import make_shards


def annotated_box(record: dict[str, Any], width: int, height: int) -> list[float]:
    """A COCO-style record's stored `bbox` as REFER's `getRefBox` returns it (xywh), in xyxy and
    clipped to the image: the box REC benchmarks score against."""
    x, y, w, h = record["bbox"]
    return [max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)]


def mask_box(mask: Any) -> list[int]:
    """The tight xyxy box of a decoded H x W mask's pixels."""
    ys, xs = mask.nonzero()
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def build_all(builder: RegionBuilder) -> tuple[list[dict], list[Rejected]]:
    """Every split's rows, splits in sorted order, and every rejection, index ones first.

    Items go through `builder.build_items`, so a builder that loses track of a unit fails here.
    """
    index = builder.index()
    rows: list[dict] = []
    rejected = [r for _, r in index.rejected]
    for split in sorted(index.items):
        for outcome in builder.build_items(index.items[split]):
            if isinstance(outcome, Built):
                rows.append(outcome.row)
            else:
                rejected.append(outcome)
    return rows, rejected


def build_through_shards(
    builder: RegionBuilder, items_per_shard: int = 3
) -> tuple[list[Rejected], Counter[str]]:
    """Build shard by shard as the engine's workers do; every quarantined input and unit counts.

    The counter holds `in_<unit>`, `out_<unit>` and `q_<unit>` over everything read: inputs
    rejected while indexing count as read and quarantined, so `in = out + q` for every unit;
    and `adj_<code>`, the repairs made to inputs that were kept.
    """
    index = builder.index()
    quarantined = [r for _, r in index.rejected]
    stats: Counter[str] = Counter()
    for rejected in quarantined:
        stats.update({f"in_{k}": v for k, v in rejected.units.items()})
        stats.update({f"q_{k}": v for k, v in rejected.units.items()})
    pipeline = builder_pipeline(builder)
    with tempfile.TemporaryDirectory() as out:
        for shard in make_shards(index, items_per_shard=items_per_shard):
            receipt = run_shard(pipeline, shard, Path(out))
            if receipt["quarantine_file"]:
                lines = (Path(out) / receipt["quarantine_file"]).read_text().splitlines()
                quarantined += [
                    Rejected(**{k: v for k, v in json.loads(line).items() if k != "split"})
                    for line in lines
                ]
            for kind, counts in receipt["stats"]["units"].items():
                stats.update({f"in_{kind}": counts["in"], f"out_{kind}": counts["out"]})
                stats.update({f"q_{kind}": counts["quarantined"]})
            stats.update({f"adj_{k}": v for k, v in receipt["stats"]["adjustments"].items()})
    return quarantined, +stats


def cli_build(source: str, sample: Any, out: Path, *options: str) -> int:
    """`regionkit build <source> --root ... --images ... --out ...` on a sample, as users run it."""
    return main(
        [
            "build",
            source,
            "--root",
            str(sample.root),
            "--images",
            str(sample.images),
            "--out",
            str(out),
            "--no-progress",
            *options,
        ]
    )
