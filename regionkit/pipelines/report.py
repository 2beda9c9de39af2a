"""What a build did, as the terminal shows it: shards, rows, the balance, quarantine, repairs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from regionkit.pipelines.stats import BuildStats
from regionkit.pipelines.step import StepStats


@dataclass
class BuildReport:
    """What a build did, for the terminal and for tests.

    Attributes:
        out: the output folder.
        stats: counts over every shard, earlier runs' included.
        rows_per_split: rows written per split.
        shards_built: shards this run built.
        shards_skipped: shards already done by an earlier run.
        rows_built: rows this run wrote.
        steps: each step's counters and time over the shards this run built.
        index_seconds: time spent planning (the reader's index).
        seconds: the whole run.
    """

    out: Path
    stats: BuildStats
    rows_per_split: dict[str, int]
    shards_built: int
    shards_skipped: int
    rows_built: int
    steps: dict[str, StepStats]
    index_seconds: float
    seconds: float

    def format(self) -> str:
        built = (
            f"{self.rows_built} rows built at {_rate(self.rows_built, self.seconds)} rows/s"
            if self.shards_built
            else "nothing to build"
        )
        lines = [f"built {self.out}"]
        lines.append(
            f"  shards: {self.shards_built} built, {self.shards_skipped} already done "
            f"(index {self.index_seconds:.1f}s, total {self.seconds:.1f}s, {built})"
        )
        if self.shards_built:
            lines.append("  steps: " + ", ".join(_step_line(n, s) for n, s in self.steps.items()))
            for name, stats in self.steps.items():
                if stats.counters:
                    counted = ", ".join(f"{k} {v}" for k, v in sorted(stats.counters.items()))
                    lines.append(f"  {name}: {counted}")
        for split, rows in self.rows_per_split.items():
            lines.append(f"  {split}: {rows} rows")
        for kind, c in self.stats.to_json()["units"].items():
            lines.append(
                f"  {_plural(kind)}: {c['in']} in = {c['out']} out + {c['quarantined']} quarantined"
            )
        for code, n in _most_first(self.stats.reasons):
            lines.append(f"    quarantined {n} x {code}")
        if self.stats.adjustments:
            lines.append("  kept with a change:")
            for code, n in _most_first(self.stats.adjustments):
                lines.append(f"    {n} x {code}")
        return "\n".join(lines)


def _step_line(name: str, stats: StepStats) -> str:
    """`validate 0.4s (3 rejected)`: a step's time summed over workers, and what it refused."""
    rejected = sum(stats.rejected.values())
    return f"{name} {stats.seconds:.1f}s" + (f" ({rejected} rejected)" if rejected else "")


def _rate(count: int, seconds: float) -> str:
    """`count / seconds` with the digits that matter: 1,765, or 0.41 rather than a rounded 0."""
    rate = count / max(seconds, 1e-9)
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


def _most_first(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _plural(unit: str) -> str:
    """`image` -> `images`, `box` -> `boxes`: unit names read as English in the report."""
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")
