"""Build throughput: regionkit's Ray build of a COCO-shaped corpus against a single-process floor.

The floor is the least any converter must do: load the JSON, encode every mask with pycocotools
and write one Parquet file, in one process. regionkit additionally checks every image file,
validates every row, writes sharded, hashed, resumable output with a manifest, quarantine and
card, and does it on Ray. Both run in the same invocation on the same corpus.

    python bench/build_throughput.py                       # ~5,000 images, ~36,000 instances
    python bench/build_throughput.py --images 500 --instances-per-image 7
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pycocotools import mask as mask_api

from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.coco import write_coco_sample
from regionkit.pipelines.build import BuildOptions, run_build


def floor(annotations: Path, out: Path) -> tuple[float, int, int]:
    """Load, encode every mask, write one Parquet file; (seconds, images, instances)."""
    started = time.perf_counter()
    with annotations.open("rb") as f:
        data = json.load(f)
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    image_ids, ann_ids, counts, heights, widths = [], [], [], [], []
    for ann in data["annotations"]:
        h, w = sizes[ann["image_id"]]
        segmentation = ann["segmentation"]
        rle = (
            mask_api.merge(mask_api.frPyObjects(segmentation, h, w))
            if isinstance(segmentation, list)
            else mask_api.frPyObjects(segmentation, h, w)
            if isinstance(segmentation["counts"], list)
            else segmentation
        )
        counts.append(rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"])
        image_ids.append(ann["image_id"])
        ann_ids.append(ann["id"])
        heights.append(h)
        widths.append(w)
    table = pa.table(
        {"image_id": image_ids, "id": ann_ids, "counts": counts, "height": heights, "width": widths}
    )
    pq.write_table(table, out, compression="zstd")
    return time.perf_counter() - started, len(data["images"]), len(data["annotations"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument(
        "--instances-per-image",
        type=int,
        default=7,
        help="polygon instances per image (crowd and RLE extras come on top)",
    )
    parser.add_argument("--items-per-shard", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--ray-address", default=None)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="regionkit-bench-"))
    started = time.perf_counter()
    sample = write_coco_sample(
        workdir / "coco",
        num_images=args.images,
        instances_per_image=args.instances_per_image,
        size=(640, 480),
        polygon_points=24,
        draw=False,
        seed=0,
    )
    print(
        f"corpus: {workdir} ({time.perf_counter() - started:.1f}s to write, "
        f"{sample.annotations.stat().st_size / 1e6:.1f} MB of JSON)"
    )

    floor_s, images, instances = floor(sample.annotations, workdir / "floor.parquet")

    import ray

    started = time.perf_counter()
    ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - started
    cpus = int(ray.cluster_resources().get("CPU", 0))
    builder = CocoBuilder(sample.annotations, sample.images)
    results = {}
    for run in ("cold", "warm"):
        report = run_build(
            builder,
            BuildOptions(
                out=workdir / f"out-{run}", items_per_shard=args.items_per_shard, progress=False
            ),
        )
        results[run] = report
    ray.shutdown()

    cold_s = results["cold"].seconds + init_s
    warm_s = results["warm"].seconds
    print(
        f"{images} images, {instances} instances, Ray CPUs {cpus}, "
        f"{len(results['warm'].rows_per_split)} split(s), "
        f"{results['warm'].shards_built} shards"
    )
    print(f"{'run':44} {'wall s':>8} {'rows/s':>9} {'inst/s':>9} {'vs floor':>9}")
    for label, seconds in (
        ("floor: one process, load+encode+1 parquet", floor_s),
        ("regionkit, Ray started by the build", cold_s),
        ("regionkit, Ray already running", warm_s),
    ):
        print(
            f"{label:44} {seconds:8.2f} {images / seconds:9.0f} {instances / seconds:9.0f} "
            f"{seconds / floor_s:8.2f}x"
        )
    print(f"(ray.init took {init_s:.2f}s; regionkit index {results['warm'].index_seconds:.2f}s)")


if __name__ == "__main__":
    main()
