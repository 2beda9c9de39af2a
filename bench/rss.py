"""Peak resident memory of a command and of every process it starts, sampled from Linux /proc.

A Ray build spreads over a driver, the Ray daemons and worker processes; `ru_maxrss` sees only
what a parent reaps. Sampling the whole process tree gives the figures that matter for "does
memory stay flat as the input grows": the driver's peak, the largest single worker's peak, and
the peak of the tree's sum (which also counts Ray's own daemons).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass
class TreeMemory:
    """What one measured command used: seconds, exit status and peak resident bytes."""

    seconds: float
    returncode: int
    root_peak: int = 0
    tree_peak: int = 0
    peak_by_name: dict[str, int] = field(default_factory=dict)

    def worker_peak(self) -> int:
        """The largest peak among Ray worker processes (named `ray::...`)."""
        return max((v for k, v in self.peak_by_name.items() if k.startswith("ray::")), default=0)


def _process_table() -> tuple[dict[int, list[int]], dict[int, str]]:
    """Children by parent pid and each process's short name, from one pass over /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name_end = stat.rindex(")")
        names[int(entry.name)] = stat[stat.index("(") + 1 : name_end]
        children[int(stat[name_end + 2 :].split()[1])].append(int(entry.name))
    return children, names


def _rss(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def run_measured(command: list[str], env: dict[str, str] | None = None) -> TreeMemory:
    """Run `command`, sampling its process tree's memory every 50 ms until it exits."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    result = TreeMemory(seconds=0.0, returncode=0)
    peaks: dict[str, int] = defaultdict(int)
    while process.poll() is None:
        children, names = _process_table()
        tree, todo = [], [process.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        sizes = {pid: _rss(pid) for pid in tree}
        result.root_peak = max(result.root_peak, sizes[process.pid])
        result.tree_peak = max(result.tree_peak, sum(sizes.values()))
        for pid, size in sizes.items():
            name = names.get(pid, "?")
            peaks[name] = max(peaks[name], size)
        time.sleep(0.05)
    result.seconds = time.perf_counter() - started
    result.returncode = process.returncode
    result.peak_by_name = dict(peaks)
    return result
