"""`regionkit inspect`: what a built dataset holds, and whether it is still sound.

Reads the manifest and every shard, re-checks shard hashes, row counts, row validity and id
uniqueness, and summarises the quarantine, so a dataset copied between machines or edited by
hand can be trusted again before training on it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from regionkit.catalog.validate import validate_row
from regionkit.pipelines.storage import sha256_file

MAX_PROBLEMS_SHOWN = 20


class NotADataset(Exception):
    """The folder has no regionkit manifest."""


@dataclass
class SplitSummary:
    """Per-split statistics of the rows."""

    rows: int = 0
    regions: int = 0
    masks: int = 0
    groundings: int = 0
    no_target_groundings: int = 0
    captions: int = 0
    relations: int = 0
    messages: int = 0
    tasks: Counter[str] = field(default_factory=Counter)

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        self.regions += len(row["regions"])
        self.masks += sum(r["mask"] is not None for r in row["regions"])
        self.groundings += len(row["groundings"])
        self.no_target_groundings += sum(not g["regions"] for g in row["groundings"])
        self.captions += len(row["captions"])
        self.relations += len(row["relations"])
        self.messages += len(row["messages"])
        self.tasks[row["task"]] += 1


@dataclass
class InspectReport:
    """Everything `inspect` found."""

    path: Path
    manifest: dict[str, Any]
    splits: dict[str, SplitSummary]
    quarantine: Counter[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"{self.path}: {self.manifest['name']} ({self.manifest['format']})"]
        for name, s in self.splits.items():
            lines.append(
                f"  {name}: {s.rows} rows, {s.regions} regions ({s.masks} with masks), "
                f"{s.groundings} groundings ({s.no_target_groundings} no-target), "
                f"{s.captions} captions, {s.relations} relations, {s.messages} messages; "
                f"tasks {dict(s.tasks)}"
            )
        for kind, c in self.manifest["counts"]["units"].items():
            lines.append(
                f"  {kind}: {c['in']} in = {c['out']} out + {c['quarantined']} quarantined"
            )
        if self.quarantine:
            lines.append(f"  quarantine: {sum(self.quarantine.values())} records")
            for key, n in sorted(self.quarantine.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"    {n} x {key}")
        else:
            lines.append("  quarantine: empty")
        if self.problems:
            lines.append(f"  PROBLEMS ({len(self.problems)}):")
            lines += [f"    {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
            if len(self.problems) > MAX_PROBLEMS_SHOWN:
                lines.append(f"    ... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        else:
            lines.append("  valid: shard hashes, row counts, rows and ids all check out")
        return "\n".join(lines)


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise NotADataset(f"{path}: no manifest.json; not a regionkit dataset folder")
    return json.loads(manifest_path.read_text())


def inspect_dataset(path: Path) -> InspectReport:
    """Summarise and re-validate the dataset at `path`."""
    manifest = read_manifest(path)
    problems: list[str] = []
    splits: dict[str, SplitSummary] = {}
    ids: Counter[str] = Counter()
    for split, entry in manifest["splits"].items():
        summary = splits.setdefault(split, SplitSummary())
        for shard in entry["shards"]:
            file = path / shard["file"]
            if not file.exists():
                problems.append(f"{shard['file']}: missing")
                continue
            if sha256_file(file) != shard["sha256"]:
                problems.append(f"{shard['file']}: sha256 differs from the manifest")
            rows = 0
            for batch in pq.ParquetFile(file).iter_batches():
                for row in batch.to_pylist():
                    rows += 1
                    summary.add(row)
                    ids[row["id"]] += 1
                    problems += [f"{shard['file']}: {row['id']}: {p}" for p in validate_row(row)]
            if rows != shard["rows"]:
                problems.append(f"{shard['file']}: {rows} rows, manifest says {shard['rows']}")
    problems += [f"id {i!r} appears {n} times" for i, n in ids.items() if n > 1]
    for kind, c in manifest["counts"]["units"].items():
        if c["in"] != c["out"] + c["quarantined"]:
            problems.append(
                f"{kind}: {c['in']} in != {c['out']} out + {c['quarantined']} quarantined"
            )

    quarantine: Counter[str] = Counter()
    for name in manifest["quarantine_files"]:
        file = path / name
        if not file.exists():
            problems.append(f"{name}: missing")
            continue
        for line in file.read_text().splitlines():
            record = json.loads(line)
            quarantine[f"{record['stage']}/{record['code']}"] += 1
    if dict(quarantine) != manifest["counts"]["quarantine_reasons"]:
        problems.append("quarantine files do not match the manifest's quarantine counts")
    return InspectReport(path, manifest, splits, quarantine, problems)
