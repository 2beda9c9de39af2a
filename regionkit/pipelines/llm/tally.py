"""Counters that many request threads add to at once, taken by the step after each batch."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Tally:
    """A thread-safe `Counter`: `add` from any thread, `take` what was added since last time."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a copy sent to a worker starts from zero, with its own lock

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
