"""Build throughput and memory: regionkit's Ray builds against single-process floors.

A floor is the least any converter must do, in one process: load the source files, encode the
masks with pycocotools, write one Parquet file. It parses JSON with the same call as regionkit
(orjson, collector paused), so a slower parser cannot flatter the ratios. regionkit additionally
checks every image file, validates every row, writes sharded, hashed, resumable output with a
manifest, quarantine and card, and does it on Ray. Floor and build run in the same invocation on
the same corpus.

    python bench/build_throughput.py coco     # COCO instances: ~5,000 images, ~37,700 instances
    python bench/build_throughput.py coco --images 50000   # a larger COCO corpus
    python bench/build_throughput.py refer    # refer layout at RefCOCO scale: 20,000 images,
                                              # 50,000 refs, 142,000 sentences
    python bench/build_throughput.py vg       # VG region_descriptions at 100 MB and 1 GB:
                                              # peak memory of floor and build (Linux /proc)
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pycocotools import mask as mask_api
from rss import run_measured  # a sibling script: the script's folder is on sys.path

from regionkit.builders.base import RegionBuilder
from regionkit.builders.files import paused_gc
from regionkit.pipelines.build import BuildOptions, run_build
from regionkit.pipelines.report import BuildReport

MB = 1_000_000


def _load_json(path: Path) -> Any:
    """Parse as regionkit's `load_json` does, minus its error wrapping: a floor on the standard
    library's parser (about 3x slower) would flatter regionkit's ratios."""
    with paused_gc():
        return orjson.loads(path.read_bytes())


def _coco_rle(segmentation: object, height: int, width: int) -> str:
    """What any converter does per mask: polygons merged, uncompressed RLE compressed."""
    if isinstance(segmentation, list):
        rle = mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_api.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    counts = rle["counts"]
    return counts.decode() if isinstance(counts, bytes) else counts


def coco_floor(annotations: Path, out: Path) -> dict[str, int]:
    """Load the instances file, encode every mask, write one Parquet file."""
    data = _load_json(annotations)
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    columns = defaultdict(list)
    for ann in data["annotations"]:
        height, width = sizes[ann["image_id"]]
        columns["image_id"].append(ann["image_id"])
        columns["id"].append(ann["id"])
        columns["counts"].append(_coco_rle(ann["segmentation"], height, width))
    pq.write_table(pa.table(dict(columns)), out, compression="zstd")
    return {"images": len(data["images"]), "instances": len(data["annotations"])}


def refer_floor(root: Path, split_by: str, out: Path) -> dict[str, int]:
    """Unpickle the refs, load the instances, encode each referred mask, one row per image."""
    with (root / f"refs({split_by}).p").open("rb") as f:
        refs = pickle.load(f, encoding="latin1")  # the usual one-liner; trusts the file
    data = _load_json(root / "instances.json")
    images = {image["id"]: image for image in data["images"]}
    anns = {ann["id"]: ann for ann in data["annotations"]}
    rows: dict[tuple[int, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    sentences = 0
    for ref in refs:
        image = images[ref["image_id"]]
        row = rows[(ref["image_id"], ref["split"])]
        row["ann_id"].append(ref["ann_id"])
        row["counts"].append(
            _coco_rle(anns[ref["ann_id"]]["segmentation"], image["height"], image["width"])
        )
        row["sentences"].append([s["sent"] for s in ref["sentences"]])
        sentences += len(ref["sentences"])
    table = pa.table(
        {
            "image_id": [key[0] for key in rows],
            "split": [key[1] for key in rows],
            "ann_ids": [row["ann_id"] for row in rows.values()],
            "counts": [row["counts"] for row in rows.values()],
            "sentences": [row["sentences"] for row in rows.values()],
        }
    )
    pq.write_table(table, out, compression="zstd")
    return {"rows": len(rows), "refs": len(refs), "sentences": sentences}


def vg_floor(root: Path, out: Path) -> dict[str, int]:
    """Load region_descriptions.json whole (what every VG loader does), one row per image."""
    data = _load_json(root / "region_descriptions.json")
    table = pa.table(
        {
            "image_id": [record["id"] for record in data],
            "boxes": [
                [
                    [r["x"], r["y"], r["x"] + r["width"], r["y"] + r["height"]]
                    for r in record["regions"]
                ]
                for record in data
            ],
            "phrases": [[r["phrase"].strip() for r in record["regions"]] for record in data],
        }
    )
    pq.write_table(table, out, compression="zstd")
    return {"rows": len(data), "regions": sum(len(record["regions"]) for record in data)}


def _timed(function: Callable[[], dict[str, int]]) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    counts = function()
    return time.perf_counter() - started, counts


def _ray_builds(
    builder: RegionBuilder, workdir: Path, items_per_shard: int, ray_address: str | None
) -> tuple[float, BuildReport, BuildReport]:
    """ray.init seconds, then a build on a fresh Ray and a second one with Ray warm."""
    import ray

    started = time.perf_counter()
    ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - started
    reports = [
        run_build(
            builder,
            BuildOptions(
                out=workdir / f"out-{run}", items_per_shard=items_per_shard, progress=False
            ),
        )
        for run in ("cold", "warm")
    ]
    ray.shutdown()
    return init_s, reports[0], reports[1]


def _print_table(units: dict[str, int], floor_s: float, runs: list[tuple[str, float]]) -> None:
    header = "".join(f"{name + '/s':>13}" for name in units)
    print(f"{'run':44} {'wall s':>8}{header} {'vs floor':>9}")
    for label, seconds in [("floor: one process, load+encode+1 parquet", floor_s), *runs]:
        rates = "".join(f"{n / seconds:13,.0f}" for n in units.values())
        print(f"{label:44} {seconds:8.2f}{rates} {seconds / floor_s:8.2f}x")


def _compare(
    builder: RegionBuilder,
    floor: Callable[[], dict[str, int]],
    workdir: Path,
    args: argparse.Namespace,
) -> None:
    floor_s, counts = _timed(floor)
    init_s, cold, warm = _ray_builds(builder, workdir, args.items_per_shard, args.ray_address)
    built = {unit: c["out"] for unit, c in warm.stats.to_json()["units"].items()}
    print(f"floor counted {counts}; regionkit built {warm.stats.rows} rows from {built}")
    _print_table(
        counts,
        floor_s,
        [
            ("regionkit, Ray started by the build", cold.seconds + init_s),
            ("regionkit, Ray already running", warm.seconds),
        ],
    )
    print(f"(ray.init {init_s:.2f}s; regionkit index {warm.index_seconds:.2f}s)")


def bench_coco(args: argparse.Namespace, workdir: Path) -> None:
    from regionkit.builders.coco import CocoBuilder
    from regionkit.builders.samples.coco import write_coco_sample

    started = time.perf_counter()
    sample = write_coco_sample(
        workdir / "coco",
        num_images=args.images,
        instances_per_image=7,
        size=(640, 480),
        polygon_points=24,
        draw=False,
    )
    size_mb = sample.annotations.stat().st_size / MB
    print(f"corpus: {time.perf_counter() - started:.1f}s to write, {size_mb:.1f} MB of JSON")
    _compare(
        CocoBuilder(sample.annotations, sample.images),
        lambda: coco_floor(sample.annotations, workdir / "floor.parquet"),
        workdir,
        args,
    )


def bench_refer(args: argparse.Namespace, workdir: Path) -> None:
    from regionkit.builders.refer import RefCocoBuilder
    from regionkit.builders.samples.refer import write_refer_sample

    started = time.perf_counter()
    sample = write_refer_sample(
        workdir / "refer",
        dataset="refcoco",
        num_images=args.images,
        refs_per_image=2.5,  # RefCOCO: 50,000 refs on 19,994 images
        sentences_per_ref=2.844,  # and 142,210 sentences
        size=(640, 480),
        draw=False,
    )
    size_mb = (sample.refs.stat().st_size + sample.instances.stat().st_size) / MB
    print(f"corpus: {time.perf_counter() - started:.1f}s to write, {size_mb:.1f} MB of refs+JSON")
    _compare(
        RefCocoBuilder(sample.root, sample.images),
        lambda: refer_floor(sample.root, sample.split_by, workdir / "floor.parquet"),
        workdir,
        args,
    )


def bench_vg(args: argparse.Namespace, workdir: Path) -> None:
    from regionkit.builders.samples.vg import write_vg_sample

    probe = write_vg_sample(
        workdir / "probe", num_images=200, regions_per_image=50, draw=False, parts=("regions",)
    )
    bytes_per_image = probe.file("regions").stat().st_size / 200
    env = {**os.environ, "RAY_ADDRESS": ""}
    gib = 1 << 30
    print(
        f"{'input MB':>9} {'images':>8} {'run':10} {'wall s':>7} {'rows/s':>8} "
        f"{'main GiB':>9} {'worker GiB':>11} {'tree GiB':>9}"
    )
    for target_mb in args.sizes_mb:
        num_images = max(1, round(target_mb * MB / bytes_per_image))
        sample = write_vg_sample(
            workdir / f"vg-{target_mb}",
            num_images=num_images,
            regions_per_image=50,
            draw=False,
            parts=("regions",),
        )
        input_mb = sample.file("regions").stat().st_size / MB
        floor_cmd = [sys.executable, __file__, "vg-floor", str(sample.root)]
        build_cmd = [
            sys.executable,
            "-m",
            "regionkit",
            "build",
            "vg",
            "--root",
            str(sample.root),
            "--images",
            str(sample.images),
            "--parts",
            "regions",
            "--out",
            str(workdir / f"out-vg-{target_mb}"),
            "--no-progress",
        ]
        for label, command in (("floor", floor_cmd), ("regionkit", build_cmd)):
            measured = run_measured(command, env)
            if measured.returncode != 0:
                raise SystemExit(f"{label} failed with exit code {measured.returncode}")
            print(
                f"{input_mb:9.0f} {num_images:8,} {label:10} {measured.seconds:7.1f} "
                f"{num_images / measured.seconds:8,.0f} {measured.root_peak / gib:9.2f} "
                f"{measured.worker_peak() / gib:11.2f} {measured.tree_peak / gib:9.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--items-per-shard", type=int, default=1000)
    corpora = parser.add_subparsers(dest="corpus", required=True)
    corpora.add_parser("coco").add_argument(
        "--images", type=int, default=5000, help="corpus size (default: 5000)"
    )
    corpora.add_parser("refer").add_argument(
        "--images", type=int, default=20000, help="corpus size (default: 20000)"
    )
    corpora.add_parser("vg").add_argument(
        "--sizes-mb", type=int, nargs="+", default=[100, 1000], help="region_descriptions sizes"
    )
    floor = corpora.add_parser("vg-floor", help="(internal) the VG floor, run measured")
    floor.add_argument("root", type=Path)
    args = parser.parse_args()
    if args.corpus == "vg-floor":
        vg_floor(args.root, args.root / "floor.parquet")
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="regionkit-bench-"))
    print(f"workdir: {workdir}")
    {"coco": bench_coco, "refer": bench_refer, "vg": bench_vg}[args.corpus](args, workdir)


if __name__ == "__main__":
    main()
