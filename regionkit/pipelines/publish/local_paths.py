"""The publisher's folders out of what is published.

A build's manifest names the files it read (`source_files`, each builder's arguments, the
image root) and its quarantine reasons quote paths, all absolute on the machine that built it:
they would tell the world a user name and a folder layout, and mean nothing to a reader. The
published copies name them from the folder they share instead (`/home/ana/data/coco/val2017`
becomes `coco/val2017` when every named path lies under `/home/ana/data`, and that folder
itself `.`); the sha256 of each source file, which is what identifies it, stays as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from regionkit.pipelines.storage import temporary_path


def local_folders(manifest: dict[str, Any]) -> list[str]:
    """The folders to cut, longest first: the one folder that holds every absolute path the
    manifest names, or each path's own folder when they share only the root."""
    named = [manifest.get("image_root")]
    named += [entry["path"] for entry in manifest.get("source_files", [])]
    for builder in manifest.get("builders", []):
        for value in builder.get("arguments", {}).values():
            named += value if isinstance(value, list) else [value]
    parents = [os.path.dirname(p) for p in named if isinstance(p, str) and os.path.isabs(p)]
    if not parents:
        return []
    shared = os.path.commonpath(parents)
    folders = {shared} if os.path.dirname(shared) != shared else set(parents)
    return sorted(folders, key=len, reverse=True)


def without_folders(text: str, folders: list[str]) -> str:
    """`text` with each folder cut where it starts a path, and `.` where it is the path."""
    for folder in folders:
        text = text.replace(folder + os.sep, "").replace(folder, ".")
    return text


def copy_without_folders(source: Path, target: Path, folders: list[str]) -> Path:
    """`source` (text) written to `target` line by line with the folders cut."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = temporary_path(target)
    with source.open(encoding="utf-8") as lines, partial.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(without_folders(line, folders))
    os.replace(partial, target)
    return target
