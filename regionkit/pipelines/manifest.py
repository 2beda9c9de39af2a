"""The manifest: what a build read, which steps it ran, what it wrote (hashed), and the counts."""

from __future__ import annotations

from typing import Any

import regionkit
from regionkit.pipelines.stats import BuildStats
from regionkit.pipelines.step import StepStats

MANIFEST_FORMAT = "regionkit.dataset/2"
"""Version 2: the plan records the pipeline's steps; shards are written by workers."""


def build_manifest(
    plan: dict[str, Any],
    builders: list[dict[str, Any]],
    image_root: str | None,
    receipts: list[dict[str, Any]],
    stats: BuildStats,
    name: str,
    has_index_quarantine: bool,
) -> dict[str, Any]:
    """The manifest of a finished build from its plan and its shards' receipts.

    It holds no timing, so a rerun of deterministic steps writes the same bytes.
    """
    splits: dict[str, dict[str, Any]] = {}
    steps: dict[str, StepStats] = {}
    for r in receipts:
        split = splits.setdefault(r["split"], {"rows": 0, "shards": []})
        split["rows"] += r["rows"]
        split["shards"].append(
            {"file": r["file"], "rows": r["rows"], "bytes": r["bytes"], "sha256": r["sha256"]}
        )
        for step, counters in r["steps"].items():
            steps[step] = steps.get(step, StepStats()) + StepStats.from_json(counters)
    quarantine_files = ["quarantine/index.jsonl"] if has_index_quarantine else []
    quarantine_files += [r["quarantine_file"] for r in receipts if r["quarantine_file"]]
    recipe_steps = [
        {**step, **_counters(steps.get(step["name"], StepStats()))} for step in plan["steps"]
    ]
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "regionkit_version": regionkit.__version__,
        "builders": builders,
        "recipe": {"name": plan["name"], "steps": recipe_steps},
        "image_root": image_root,
        "source_files": plan["source_files"],
        "splits": splits,
        "counts": stats.to_json(),
        "quarantine_files": quarantine_files,
    }


def _counters(stats: StepStats) -> dict[str, Any]:
    """A step's counters without its time, which differs from run to run."""
    counters = stats.to_json()
    del counters["seconds"]
    return counters
