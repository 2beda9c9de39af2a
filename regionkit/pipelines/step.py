"""The step contract: rows in, rows and quarantine entries out, in plain Python.

A pipeline is a reader, a list of steps and a writer. A step sees a batch of rows (each a
`Built`: the row, the input units it accounts for, the repairs made on the way in) and returns
the rows that go on plus a `Rejected` for each row it refuses, so `in = out + quarantined` holds
through every step. Steps know nothing of Ray: tests call `process` on a list, and the engine
runs the same object on workers, timing and counting every call (`StepStats`).

A step has a `name` (the quarantine stage of what it rejects), a `version` and `params` (both
recorded in the plan and the manifest, so changing either makes another build), and the
`resources` one copy needs. `setup` runs once per worker process (a client, a model);
`open`/`close` bracket each shard, for steps that keep per-shard state such as the writer.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from regionkit.builders.base import Built, Rejected


@dataclass(frozen=True)
class Resources:
    """What one copy of a step needs on a worker; a shard's task asks for the most any step asks.

    Attributes:
        cpus: CPU cores (fractions allowed; more than 0).
        gpus: GPU devices (fractions allowed).
        memory_gb: memory in GiB to reserve, or None to reserve nothing.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        if not self.cpus > 0:
            raise ValueError(f"Resources.cpus must be more than 0, got {self.cpus}")
        if self.gpus < 0:
            raise ValueError(f"Resources.gpus must not be negative, got {self.gpus}")
        if self.memory_gb is not None and not self.memory_gb > 0:
            raise ValueError(f"Resources.memory_gb must be more than 0, got {self.memory_gb}")

    def union(self, other: Resources) -> Resources:
        """Enough for either: the larger of each."""
        memory = [m for m in (self.memory_gb, other.memory_gb) if m is not None]
        return Resources(
            max(self.cpus, other.cpus), max(self.gpus, other.gpus), max(memory, default=None)
        )


@dataclass
class StepResult:
    """What a step returns for a batch: the rows that go on, the rows it refused, and anything
    else it counted (requests, tokens, cache hits) for the report and the manifest."""

    rows: list[Built]
    rejected: list[Rejected] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class ShardContext:
    """Where a shard's output goes: handed to `Step.open` before its first batch.

    Attributes:
        out: the output folder (on a cluster, a filesystem every node sees).
        shard: the shard's name, e.g. `train-00003-of-00008`.
        split: the split it belongs to.
    """

    out: Path
    shard: str
    split: str

    @property
    def data_path(self) -> str:
        """The shard's Parquet file, relative to `out`."""
        return f"data/{self.shard}.parquet"


@dataclass
class StepStats:
    """One step's counters over a shard or a whole build; they add up.

    Attributes:
        rows_in: rows handed to the step.
        rows_out: rows it passed on.
        rejected: rows it refused, per quarantine code.
        seconds: time spent in the step.
        counters: what else the step counted (an LLM step: requests, tokens, cache hits).
    """

    rows_in: int = 0
    rows_out: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    counters: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: StepStats) -> StepStats:
        return StepStats(
            self.rows_in + other.rows_in,
            self.rows_out + other.rows_out,
            self.rejected + other.rejected,
            self.seconds + other.seconds,
            self.counters + other.counters,
        )

    def to_json(self) -> dict[str, Any]:
        data = {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rejected": dict(sorted(self.rejected.items())),
            "seconds": round(self.seconds, 3),
        }
        if self.counters:
            data["counters"] = dict(sorted(self.counters.items()))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepStats:
        return cls(
            data["rows_in"],
            data["rows_out"],
            Counter(data["rejected"]),
            data["seconds"],
            Counter(data.get("counters", {})),
        )


class Step(ABC):
    """Base class of every step; a subclass sets `name` and `version` and writes `process`."""

    name: ClassVar[str]
    version: ClassVar[str]
    resources: ClassVar[Resources] = Resources()

    def params(self) -> dict[str, Any]:
        """The settings that determine the step's output (JSON-serialisable)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The step as the plan and the manifest record it."""
        return {"name": self.name, "version": self.version, "params": self.params()}

    def setup(self) -> None:
        """Once per worker process, before the first shard: open clients, load models."""
        return None

    def open(self, context: ShardContext) -> None:
        """Before a shard's first batch."""
        return None

    @abstractmethod
    def process(self, rows: list[Built]) -> StepResult:
        """Rows in; the rows that go on and the ones refused (each `Rejected` with its units)."""

    def close(self) -> dict[str, Any]:
        """After a shard's last batch; what it returns goes into the shard's receipt."""
        return {}

    def run(self, rows: list[Built], stats: StepStats) -> StepResult:
        """`process`, timed and counted into `stats`, its rejections marked with this stage."""
        started = time.perf_counter()
        result = self.process(rows)
        stats.seconds += time.perf_counter() - started
        stats.rows_in += len(rows)
        stats.rows_out += len(result.rows)
        stats.rejected.update(r.code for r in result.rejected)
        stats.counters.update(result.counters)
        result.rejected = [replace(r, stage=self.name) for r in result.rejected]
        return result
