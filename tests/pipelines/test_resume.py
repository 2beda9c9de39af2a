"""A build killed part-way (a real SIGKILL of the driver) resumes to byte-identical output."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.coco import write_coco_sample
from regionkit.pipelines.build import BuildOptions, run_build

SHARDS = 8
WAIT_SECONDS = 120


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a dataset folder except the resume state, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "_progress" not in p.parts
    }


def _release(fifo: Path) -> None:
    """Unblock a reader still waiting on the FIFO (if any), so no worker stays stuck."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_killed_build_resumes_byte_identical(ray_cluster, tmp_path):
    sample = write_coco_sample(tmp_path / "src", num_images=16, seed=3)
    builder = CocoBuilder(sample.annotations, sample.images)
    reference = tmp_path / "reference" / "coco"
    run_build(builder, BuildOptions(out=reference, shards=SHARDS, progress=False))

    # One image becomes a FIFO: reading it blocks, so its shard hangs while the others finish.
    hung_image = sorted(sample.images.iterdir())[5]  # in shard 2 of 8
    saved = tmp_path / "saved.jpg"
    shutil.move(hung_image, saved)
    os.mkfifo(hung_image)

    out = tmp_path / "killed" / "coco"
    command = [
        sys.executable,
        "-m",
        "regionkit",
        "build",
        "coco",
        "--annotations",
        str(sample.annotations),
        "--images",
        str(sample.images),
        "--out",
        str(out),
        "--shards",
        str(SHARDS),
        "--max-in-flight",
        "2",
        "--ray-address",
        ray_cluster,
        "--no-progress",
    ]
    driver = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        receipts = out / "_progress"
        while len(list(receipts.glob("val2017-*.json"))) < SHARDS - 1:
            assert driver.poll() is None, driver.stdout.read().decode()
            assert time.monotonic() < deadline, "the other shards did not finish in time"
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        _release(hung_image)
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    finished = {f"val2017-{i:05d}-of-00008.parquet" for i in range(SHARDS) if i != 2}
    assert {p.name for p in (out / "data").glob("*.parquet")} == finished
    (out / "data" / ".val2017-00002-of-00008.parquet.tmp-1").write_bytes(b"half a write")

    hung_image.unlink()
    shutil.move(saved, hung_image)
    report = run_build(builder, BuildOptions(out=out, shards=SHARDS, progress=False))
    assert (report.shards_built, report.shards_skipped) == (1, SHARDS - 1)
    resumed = json.loads((out / "_progress" / "val2017-00002-of-00008.json").read_text())
    assert report.rows_built == resumed["rows"] < report.stats.rows
    assert f"{resumed['rows']} rows built at" in report.format()
    assert _files(out) == _files(reference)
