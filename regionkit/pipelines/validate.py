"""The record check as a step: a row with problems goes to quarantine whole, with all of them."""

from __future__ import annotations

from regionkit.builders.base import Built, Rejected
from regionkit.catalog.validate import validate_row
from regionkit.pipelines.step import Step, StepResult


class ValidateRows(Step):
    """Check every row against the record schema's rules (`catalog.validate.validate_row`).

    Runs on workers, so the cost is paid in parallel; a rejected row keeps its input units, so
    the inputs it stood for are counted as quarantined at stage `validate`.
    """

    name = "validate"
    version = "1"

    def process(self, rows: list[Built]) -> StepResult:
        kept, rejected = [], []
        for built in rows:
            problems = validate_row(built.row)
            if problems:
                reason = "; ".join(problems)
                rejected.append(
                    Rejected(built.row["id"], "invalid_row", reason, built.units, built.row)
                )
            else:
                kept.append(built)
        return StepResult(kept, rejected)
