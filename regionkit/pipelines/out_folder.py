"""The output folder: whose it is, what a rerun may do to it, and cleaning up after a stop.

A build writes into `--out` only when the folder is new, empty, or a regionkit build of the same
inputs (which it resumes). Everything else is refused before a byte is written, with the reason:
the folder is one of the build's own inputs, it holds someone else's files, or it holds a build
of other inputs (named: which source, argument or file differs) and `--overwrite` was not given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from regionkit.pipelines.storage import TMP_MARKER, dumps_json, write_text_atomic

PLAN_FILE = Path("_progress") / "plan.json"
"""Written first by every build: what marks a folder as a regionkit build and what it holds."""

OWNED_PATHS = ("data", "quarantine", "_progress", "manifest.json", "README.md")
"""What `--overwrite` removes: a build's own files, nothing else in the folder."""


class OutFolderRefused(Exception):
    """`--out` cannot take this build; nothing was written to it."""


def check_out_folder(
    out: Path, inputs: list[Path], plan_head: dict[str, Any], overwrite: bool
) -> None:
    """Refuse, before any work, an `out` that is one of the build's `inputs`, a non-empty
    folder that is not a build, or (without `overwrite`) a build whose plan starts otherwise
    than `plan_head` (another builder or other arguments)."""
    for folder in inputs:
        if out == folder.resolve():
            raise OutFolderRefused(
                f"--out {out} is the build's input folder {folder}; choose a new folder, e.g. "
                f"{out.parent / (out.name + '-regionkit')}"
            )
    if out.is_file():
        raise OutFolderRefused(f"--out {out} is a file; give a folder")
    plan_path = out / PLAN_FILE
    if plan_path.exists():
        if not overwrite:
            _refuse_other_build(out, json.loads(plan_path.read_text()), plan_head)
    elif out.is_dir() and any(out.iterdir()):
        raise OutFolderRefused(
            f"--out {out} holds files and is not a regionkit build, so nothing is written there; "
            "choose a new or empty folder"
        )


def _refuse_other_build(out: Path, previous: dict[str, Any], plan: dict[str, Any]) -> None:
    """Raise when `previous` differs from `plan` in any of the keys `plan` holds."""
    if any(previous.get(key) != value for key, value in plan.items()):
        raise OutFolderRefused(
            f"--out {out} holds a build of other inputs: "
            + "; ".join(plan_differences(previous, plan))
            + ". Pass --overwrite to replace it, or choose another --out."
        )


def plan_differences(previous: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """What makes `plan` (whole, or its head) another build than `previous`, in words a user
    can act on."""
    differences = []
    if previous.get("source") != plan.get("source"):
        differences.append(f"source {previous.get('source')!r} is now {plan.get('source')!r}")
    if previous.get("builder_version") != plan.get("builder_version"):
        differences.append(
            f"builder version {previous.get('builder_version')} is now "
            f"{plan.get('builder_version')}"
        )
    before, now = previous.get("arguments", {}), plan.get("arguments", {})
    for name in sorted(set(before) | set(now)):
        if before.get(name) != now.get(name):
            differences.append(f"argument {name!r} was {before.get(name)!r}, is {now.get(name)!r}")
    if previous.get("name") != plan.get("name"):
        differences.append(f"the pipeline {previous.get('name')!r} is now {plan.get('name')!r}")
    if previous.get("steps") != plan.get("steps"):
        differences.append(
            f"the steps were {_steps(previous.get('steps'))}, are {_steps(plan.get('steps'))}"
        )
    hashes = {f["path"]: f["sha256"] for f in previous.get("source_files", [])}
    for file in plan.get("source_files", []):
        if file["path"] in hashes and hashes[file["path"]] != file["sha256"]:
            differences.append(f"source file {file['path']} has changed since")
    if not differences and previous.get("shards") != plan.get("shards"):
        differences.append("the shard layout (--items-per-shard or --shards) differs")
    return differences or ["the build format differs"]


def _steps(steps: list[dict[str, Any]] | None) -> str:
    """`validate 1, write 1`: steps with their versions (parameters are in the plan file)."""
    return ", ".join(f"{step['name']} {step['version']}" for step in steps or []) or "none"


def prepare_out(out: Path, plan: dict[str, Any], overwrite: bool) -> None:
    """Make `out` ready for `plan`: resume the same build, replace another (with `overwrite`)
    or refuse it, sweep half-written files, and record the plan."""
    plan_path = out / PLAN_FILE
    if plan_path.exists():
        previous = json.loads(plan_path.read_text())
        if previous == plan:
            sweep_half_written(out)
            return
        if not overwrite:
            _refuse_other_build(out, previous, plan)
    if overwrite:
        for name in OWNED_PATHS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    sweep_half_written(out)
    write_text_atomic(plan_path, dumps_json(plan))


def sweep_half_written(out: Path) -> None:
    """Remove temporary files a killed or interrupted write left behind."""
    for stale in out.glob(f"**/.*{TMP_MARKER}*"):
        stale.unlink(missing_ok=True)
