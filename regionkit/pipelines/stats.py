"""Mergeable build counters: what came in, what went out, what went to quarantine and why.

Every shard writes its own `BuildStats`; the job total is their sum, so `in = out + quarantined`
can be checked per unit kind (images, annotations, refs, ...) for the whole build.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BuildStats:
    """Counts for one shard or a whole build.

    Attributes:
        units_in: inputs per unit kind the index declared.
        units_out: inputs per unit kind that ended in a row.
        units_quarantined: inputs per unit kind that ended in quarantine.
        reasons: quarantined records per `stage/code`.
        adjustments: changes made to inputs that were kept, per code (`polygon_part_dropped`).
        rows: rows written.
    """

    units_in: Counter[str] = field(default_factory=Counter)
    units_out: Counter[str] = field(default_factory=Counter)
    units_quarantined: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    adjustments: Counter[str] = field(default_factory=Counter)
    rows: int = 0

    def __add__(self, other: BuildStats) -> BuildStats:
        return BuildStats(
            self.units_in + other.units_in,
            self.units_out + other.units_out,
            self.units_quarantined + other.units_quarantined,
            self.reasons + other.reasons,
            self.adjustments + other.adjustments,
            self.rows + other.rows,
        )

    def unbalanced(self) -> dict[str, tuple[int, int, int]]:
        """Unit kinds where in != out + quarantined, as (in, out, quarantined); empty when sound."""
        kinds = set(self.units_in) | set(self.units_out) | set(self.units_quarantined)
        return {
            kind: (self.units_in[kind], self.units_out[kind], self.units_quarantined[kind])
            for kind in sorted(kinds)
            if self.units_in[kind] != self.units_out[kind] + self.units_quarantined[kind]
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "units": {
                kind: {
                    "in": self.units_in[kind],
                    "out": self.units_out[kind],
                    "quarantined": self.units_quarantined[kind],
                }
                for kind in sorted(set(self.units_in) | set(self.units_out))
            },
            "quarantine_reasons": dict(sorted(self.reasons.items())),
            "adjustments": dict(sorted(self.adjustments.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildStats:
        units = data["units"]
        return cls(
            Counter({k: v["in"] for k, v in units.items()}),
            Counter({k: v["out"] for k, v in units.items()}),
            Counter({k: v["quarantined"] for k, v in units.items()}),
            Counter(data["quarantine_reasons"]),
            Counter(data.get("adjustments", {})),  # absent from receipts of earlier versions
            data["rows"],
        )
