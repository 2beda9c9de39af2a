"""Files appear only whole: every write goes to a temporary name and is renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

HASH_CHUNK_BYTES = 1 << 20
TMP_MARKER = ".tmp-"
"""Temporary files are `.<name>.tmp-<pid>`: hidden, never matching a final name, swept on resume."""


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: hidden, this process's own."""
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def dumps_json(data: Any) -> str:
    """Stable JSON (sorted keys, fixed indentation) so reruns produce identical bytes."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def dumps_jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(
        json.dumps(r, sort_keys=True, ensure_ascii=False, default=str) + "\n" for r in records
    )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
