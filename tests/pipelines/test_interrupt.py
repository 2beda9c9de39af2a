"""Ctrl-C during a build: one line, exit 130, no half-written files, no Ray left behind, resumable.

The build runs as a user runs it, `regionkit build` in its own process group with an embedded
Ray of its own (a private Ray temp folder keeps it from attaching to the tests' cluster), and
gets SIGINT the way a terminal sends it: to the whole group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray

from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.coco import write_coco_sample
from regionkit.cli import main
from regionkit.pipelines.build import BuildInterrupted, BuildOptions, run_build

from .test_resume import WAIT_SECONDS, _release

SHARDS = 8
PROC = Path("/proc")
STOP_SECONDS = 120
"""A build stops in seconds. Twice, on a busy machine, one sat in `ray.wait` after Ctrl-C (the
dump of its threads showed where); `run_shards` now polls and notes Ctrl-C itself."""


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text` (Linux /proc)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


@pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux /proc to find Ray's processes")
def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(ray_cluster, tmp_path, capsys):
    sample = write_coco_sample(tmp_path / "src", num_images=16, seed=3)
    hung_image = sorted(sample.images.iterdir())[5]  # shard 2 of 8 hangs reading this FIFO
    saved = tmp_path / "saved.jpg"
    shutil.move(hung_image, saved)
    os.mkfifo(hung_image)
    out = tmp_path / "out"
    arguments = ["build", "coco", "--annotations", str(sample.annotations)]
    arguments += ["--images", str(sample.images), "--out", str(out), "--shards", str(SHARDS)]
    ray_temp = tempfile.mkdtemp(prefix="rk-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    command = ["-m", "regionkit", *arguments, "--max-in-flight", "2", "--no-progress"]
    driver = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", *command],  # SIGABRT dumps its threads' stacks
        env={**env, "RAY_TMPDIR": ray_temp},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(list((out / "_progress").glob("val2017-*.json"))) < SHARDS - 1:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the other shards did not finish in time"
            time.sleep(0.2)
        assert _processes_mentioning(ray_temp), "the build should run its own Ray"
        half_written = out / "data" / ".val2017-00002-of-00008.parquet.tmp-1"
        half_written.write_bytes(b"a write cut short")
        os.killpg(driver.pid, signal.SIGINT)
        try:
            stdout, stderr = driver.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            driver.send_signal(signal.SIGABRT)
            _, stacks = driver.communicate(timeout=30)
            pytest.fail(f"no exit {STOP_SECONDS} s after Ctrl-C; the build's threads:\n{stacks}")
    finally:
        _release(hung_image)
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()

    assert driver.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: {SHARDS - 1} of {SHARDS} shards done; rerun the same command to resume"
    )
    assert "Traceback" not in stderr + stdout and "KeyboardInterrupt" not in stderr + stdout
    assert "Token authentication" not in stderr  # Ray's notice for every new local cluster
    assert not list(out.rglob("*.tmp-*"))
    deadline = time.monotonic() + 5
    while (left := _processes_mentioning(ray_temp)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], "Ray processes outlived the interrupted build"
    shutil.rmtree(ray_temp, ignore_errors=True)

    hung_image.unlink()
    shutil.move(saved, hung_image)
    capsys.readouterr()
    assert main([*arguments, "--ray-address", ray_cluster, "--no-progress"]) == 0
    assert f"shards: 1 built, {SHARDS - 1} already done" in capsys.readouterr().out


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_while_indexing_leaves_an_earlier_build_untouched(
    ray_cluster, coco_sample, tmp_path, monkeypatch
):
    out = tmp_path / "built"
    builder = CocoBuilder(coco_sample.annotations, coco_sample.images)
    run_build(builder, BuildOptions(out, shards=4, progress=False))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(CocoBuilder, "index", _interrupt)
    with pytest.raises(BuildInterrupted, match="before any shard was built") as caught:
        run_build(builder, BuildOptions(out, shards=4, progress=False))
    assert caught.value.total is None
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_ctrl_c_in_a_process_that_brought_its_own_ray_leaves_that_ray_running(
    ray_cluster, coco_sample, tmp_path, monkeypatch
):
    """A notebook that called ray.init keeps its session: only a Ray the build connected to
    itself is shut down on Ctrl-C."""
    out = tmp_path / "built"
    builder = CocoBuilder(coco_sample.annotations, coco_sample.images)
    monkeypatch.setattr(ray, "wait", _interrupt)  # Ctrl-C while the driver waits for shards
    with pytest.raises(BuildInterrupted) as caught:
        run_build(builder, BuildOptions(out, shards=4, progress=False))
    assert (caught.value.done, caught.value.total) == (0, 4)
    assert ray.is_initialized()
    assert not list(out.rglob("*.tmp-*"))


def test_ctrl_c_in_the_demo_is_one_line_and_exit_130(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("regionkit.pipelines.demo.run_demo", _interrupt)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert err == "interrupted: rerun `regionkit demo` to run it again\n"


def test_a_ctrl_c_that_rays_wait_loses_still_stops_the_build(
    ray_cluster, coco_sample, tmp_path, monkeypatch
):
    waits = []

    def losing_wait(refs, num_returns, timeout):  # Ray's wait, as it does once in a while
        waits.append(timeout)
        assert len(waits) < 3, "the build went on waiting after Ctrl-C"
        with contextlib.suppress(KeyboardInterrupt):  # lost inside the wait
            signal.raise_signal(signal.SIGINT)
        return [], list(refs)

    monkeypatch.setattr(ray, "wait", losing_wait)
    builder = CocoBuilder(coco_sample.annotations, coco_sample.images)
    with pytest.raises(BuildInterrupted, match="0 of 4 shards done"):
        run_build(builder, BuildOptions(tmp_path / "out", shards=4, progress=False))
    assert waits == [1.0]  # a short poll, never a wait without end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
