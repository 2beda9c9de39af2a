"""Training runs as a user starts them: `regionkit train CONFIG` in a process of its own,
without a launcher or under `torchrun`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from regionkit.train.distributed import free_port


def run_training(config: dict, folder: Path, ranks: int = 1) -> list[dict]:
    """`regionkit train` in a fresh process (under torchrun for several ranks); its log."""
    path = folder / f"{Path(config['out']).name}-{config['steps']}.json"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "regionkit", "train", str(path), "--no-progress"]
    if ranks > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ranks}"]
        command = [*launcher, f"--master-port={free_port()}", "-m", *command[2:]]
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    log = Path(config["out"]) / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]
