"""Argument checks shared by the modeling configs and modules."""

from __future__ import annotations


def require_positive(owner: str, sizes: dict[str, int]) -> None:
    """Raise one ValueError naming every size below 1, so a bad config is fixed in one go."""
    bad = {name: value for name, value in sizes.items() if value < 1}
    if bad:
        raise ValueError(f"{owner} sizes must be >= 1, got {bad}")
