"""Independent calls an index may spread over the cluster: run here, or as Ray tasks.

Builders stay free of Ray. An `index(tasks)` that has bulk work (parsing the runs of a big JSON
list) hands a plain module-level function and its calls to `tasks.map`; the engine passes an
implementation that runs them as Ray tasks, and tests and small files run them in process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

Result = TypeVar("Result")


class Tasks(Protocol):
    """Runs `function(*arguments)` for each of `calls`, perhaps in parallel, results in order."""

    def map(
        self, function: Callable[..., Result], calls: Sequence[tuple[Any, ...]]
    ) -> list[Result]: ...


class InProcess:
    """`Tasks` one after the other in this process."""

    def map(
        self, function: Callable[..., Result], calls: Sequence[tuple[Any, ...]]
    ) -> list[Result]:
        return [function(*arguments) for arguments in calls]


IN_PROCESS = InProcess()
