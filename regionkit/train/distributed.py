"""Where this training process stands among the others, read from the launcher's environment.

`torchrun` and the `deepspeed` launcher both describe a process by RANK, WORLD_SIZE and
LOCAL_RANK (with MASTER_ADDR and MASTER_PORT for the rendezvous). A process started without a
launcher has none of them and is rank 0 of 1; `launch_environment` fills them in so
DeepSpeed can set up its (one-member) process group all the same.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Placement:
    """This process's place: global rank, number of processes, rank on its node."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the log, the final model and prints."""
        return self.rank == 0


def placement() -> Placement:
    """The launcher's description of this process, or rank 0 of 1 without a launcher."""
    return Placement(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def device_for(where: Placement) -> torch.device:
    """This rank's GPU when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", where.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def launch_environment() -> None:
    """Fill in the launch variables a launcher would set, for a run of one process; and put
    this interpreter's scripts folder on PATH, where pip installs the `ninja` that DeepSpeed
    compiles its operators with (a virtual environment's python run directly leaves it off)."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    if all(name in os.environ for name in LAUNCH_VARIABLES):
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
