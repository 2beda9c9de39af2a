"""Training runs as a user starts them: `regionkit train CONFIG` in a process of its own,
without a launcher or under `torchrun`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from regionkit.train.distributed import free_port


def _command(config: dict, folder: Path, ranks: int) -> list[str]:
    path = folder / f"{Path(config['out']).name}-{config['steps']}.json"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "regionkit", "train", str(path), "--no-progress"]
    if ranks > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ranks}"]
        command = [*launcher, f"--master-port={free_port()}", "-m", *command[2:]]
    return command


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}


def run_training(config: dict, folder: Path, ranks: int = 1) -> list[dict]:
    """`regionkit train` in a fresh process (under torchrun for several ranks); its log."""
    command = _command(config, folder, ranks)
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return read_log(config)


def read_log(config: dict) -> list[dict]:
    log = Path(config["out"]) / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def kill_after_checkpoint(config: dict, folder: Path, checkpoint: Path) -> str:
    """Start `regionkit train`, kill it (SIGKILL, no chance to clean up) as soon as
    `checkpoint` (a `latest` file) names a checkpoint; that name."""
    command = _command(config, folder, 1)
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_environment(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while not checkpoint.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return checkpoint.read_text().strip()
