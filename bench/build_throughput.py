"""Build throughput and memory: regionkit's Ray builds against single-process floors.

A floor is the least any converter must do, in one process: load the source files, encode the
masks with pycocotools, write one Parquet file. It parses JSON with the same call as regionkit
(orjson, collector paused), so a slower parser cannot flatter the ratios. regionkit additionally
checks every image file, validates every row, writes sharded, hashed, resumable output with a
manifest, quarantine and card, and does it on Ray. Floor and build run in the same invocation on
the same corpus: in process (medians of `--repeat` runs each, floor and build taken in turns,
Ray already running for regionkit) and as whole processes as a user runs them (the CLI starting
its own Ray), with the peak memory of the main process and of the largest worker.

    python bench/build_throughput.py coco     # COCO instances: ~5,000 images, ~38,900 instances
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
import statistics
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


def _interleaved_medians(
    floor: Callable[[], dict[str, int]], build: Callable[[], BuildReport], repeat: int
) -> tuple[float, dict[str, int], float, BuildReport]:
    """Median wall times of `repeat` floor runs and `repeat` builds, taken in turns (floor,
    build, floor, build, ...) so that a machine whose speed drifts during the benchmark
    (shared hosts do) weighs on both alike; with the last results of each."""
    floor_times, build_times = [], []
    counts, report = None, None
    for _ in range(repeat):
        started = time.perf_counter()
        counts = floor()
        floor_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = build()
        build_times.append(time.perf_counter() - started)
    return statistics.median(floor_times), counts, statistics.median(build_times), report


def _floor_and_builds(
    builder: RegionBuilder,
    floor: Callable[[], dict[str, int]],
    workdir: Path,
    args: argparse.Namespace,
) -> tuple[float, dict[str, int], float, BuildReport]:
    """The floor and builds into fresh folders with Ray already running, in turns."""
    import ray

    ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
    runs = iter(range(args.repeat))
    try:
        return _interleaved_medians(
            floor,
            lambda: run_build(
                builder,
                BuildOptions(
                    out=workdir / f"out-warm-{next(runs)}",
                    items_per_shard=args.items_per_shard,
                    progress=False,
                ),
            ),
            args.repeat,
        )
    finally:
        ray.shutdown()


def _compare(
    builder: RegionBuilder,
    floor: Callable[[], dict[str, int]],
    commands: tuple[list[str], list[str]],
    workdir: Path,
    args: argparse.Namespace,
) -> None:
    """Floor against regionkit, in process with Ray running and as whole processes.

    `commands` are the floor and the regionkit CLI as a user runs them (Ray started by the
    build); their memory is sampled over the process tree.
    """
    floor_s, counts, warm_s, warm = _floor_and_builds(builder, floor, workdir, args)
    built = {unit: c["out"] for unit, c in warm.stats.to_json()["units"].items()}
    print(f"floor counted {counts}; regionkit built {warm.stats.rows} rows from {built}")
    env = {**os.environ, "RAY_ADDRESS": ""}
    floor_cli, build_cli = (run_measured(command, env) for command in commands)
    for label, measured in (("floor", floor_cli), ("regionkit", build_cli)):
        if measured.returncode != 0:
            raise SystemExit(f"{label} command failed with exit code {measured.returncode}")
    gib = 1 << 30
    header = "".join(f"{name + '/s':>13}" for name in counts)
    print(
        f"{'run (median of ' + str(args.repeat) + ' in process)':46} {'wall s':>7}{header} "
        f"{'vs floor':>9} {'main GiB':>9} {'worker GiB':>11}"
    )
    rows = [
        ("floor: one process, load+encode+1 parquet", floor_s, floor_s, None),
        ("regionkit, Ray already running", warm_s, floor_s, None),
        ("floor, whole process", floor_cli.seconds, floor_cli.seconds, floor_cli),
        (
            "regionkit CLI, whole process (starts Ray)",
            build_cli.seconds,
            floor_cli.seconds,
            build_cli,
        ),
    ]
    for label, seconds, baseline, measured in rows:
        rates = "".join(f"{n / seconds:13,.0f}" for n in counts.values())
        memory = (
            f" {measured.root_peak / gib:9.2f} {measured.worker_peak() / gib:11.2f}"
            if measured is not None
            else ""
        )
        print(f"{label:46} {seconds:7.2f}{rates} {seconds / baseline:8.2f}x{memory}")
    steps = ", ".join(f"{name} {s.seconds:.1f}s" for name, s in warm.steps.items())
    print(f"(regionkit plan {warm.index_seconds:.2f}s; steps over all workers: {steps})")


def _cli(arguments: list[str], out: Path, args: argparse.Namespace) -> list[str]:
    """`regionkit build ...` as a user runs it."""
    options = ["--out", str(out), "--items-per-shard", str(args.items_per_shard), "--no-progress"]
    return [sys.executable, "-m", "regionkit", *arguments, *options]


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
    regionkit = ["build", "coco", "--annotations", str(sample.annotations)]
    regionkit += ["--images", str(sample.images)]
    _compare(
        CocoBuilder(sample.annotations, sample.images),
        lambda: coco_floor(sample.annotations, workdir / "floor.parquet"),
        (
            [sys.executable, __file__, "coco-floor", str(sample.annotations)],
            _cli(regionkit, workdir / "out-cli", args),
        ),
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
    regionkit = ["build", "refcoco", "--root", str(sample.root), "--images", str(sample.images)]
    _compare(
        RefCocoBuilder(sample.root, sample.images),
        lambda: refer_floor(sample.root, sample.split_by, workdir / "floor.parquet"),
        (
            [sys.executable, __file__, "refer-floor", str(sample.root), sample.split_by],
            _cli(regionkit, workdir / "out-cli", args),
        ),
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
    for corpus in ("coco", "refer"):
        corpora.choices[corpus].add_argument(
            "--repeat", type=int, default=3, help="in-process runs to take the median of"
        )
    floor = corpora.add_parser("vg-floor", help="(internal) the VG floor, run measured")
    floor.add_argument("root", type=Path)
    floor = corpora.add_parser("coco-floor", help="(internal) the COCO floor, run measured")
    floor.add_argument("annotations", type=Path)
    floor = corpora.add_parser("refer-floor", help="(internal) the refer floor, run measured")
    floor.add_argument("root", type=Path)
    floor.add_argument("split_by")
    args = parser.parse_args()
    internal = {
        "vg-floor": lambda: vg_floor(args.root, args.root / "floor.parquet"),
        "coco-floor": lambda: coco_floor(args.annotations, args.annotations.with_name("f.parquet")),
        "refer-floor": lambda: refer_floor(args.root, args.split_by, args.root / "floor.parquet"),
    }
    if args.corpus in internal:
        internal[args.corpus]()
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="regionkit-bench-"))
    print(f"workdir: {workdir}")
    {"coco": bench_coco, "refer": bench_refer, "vg": bench_vg}[args.corpus](args, workdir)


if __name__ == "__main__":
    main()
