"""A persistent cache of chat completions, one file per request, safe for many writers at once.

A request (endpoint, model, messages, parameters; never the key) hashes to a file name under
the cache folder. A file appears only whole, by rename from a name no other writer uses, so
workers on several nodes can share one folder on a shared filesystem: two writers of the same
request write the same answer and the last rename wins. A file that cannot be read as a cached
answer (a disk fault) is a miss, and the answer is asked for again.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import orjson

CACHE_FORMAT = 1
"""Bumped when what a cached answer holds changes; older entries are then misses."""


def request_key(request: dict[str, Any]) -> str:
    """The hex digest that names a request: stable across processes, machines and runs."""
    canonical = orjson.dumps({"format": CACHE_FORMAT, **request}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class ResponseCache:
    """Answers by request, under `folder/<first two hex digits>/<digest>.json`.

    Args:
        folder: the cache folder (created on first write); on a cluster, a shared one.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._made: set[str] = set()  # subfolders known to exist: no mkdir per answer

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached answer for `key`, or None."""
        try:
            with open(os.path.join(self.folder, key[:2], f"{key}.json"), "rb") as file:
                entry = orjson.loads(file.read())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        return entry["answer"]

    def put(self, key: str, answer: dict[str, Any]) -> None:
        """Store `answer` for `key`, atomically: written under a name no other writer on any
        node uses, then renamed. Plain `os` calls: an LLM step writes one per answer."""
        folder = os.path.join(self.folder, key[:2])
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        tmp = os.path.join(folder, f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
        data = memoryview(orjson.dumps({"key": key, "answer": answer}))
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while data:
                data = data[os.write(descriptor, data) :]
        finally:
            os.close(descriptor)
        os.replace(tmp, os.path.join(folder, f"{key}.json"))
