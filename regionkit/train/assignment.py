"""Minimum-cost matching of predictions to ground truths (the Hungarian method).

MUSE-style answers name several targets in no fixed order, so predicted masks are matched to
ground-truth masks before scoring, as PixelLM's evaluation does. Answers hold tens of masks at
most, so the classic O(n^3) shortest-augmenting-path form with row and column potentials is
plenty, and it keeps a large dependency out for one function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def min_cost_assignment(cost: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Pairs (row, column) of least total cost, each row and column used at most once; as
    many pairs as the smaller side has. `cost` is rows x columns, finite."""
    rows = len(cost)
    columns = len(cost[0]) if rows else 0
    if rows == 0 or columns == 0:
        return []
    transposed = rows > columns
    matrix = (
        [list(col) for col in zip(*cost, strict=True)] if transposed else [list(r) for r in cost]
    )
    n, m = len(matrix), len(matrix[0])  # n <= m
    # Potentials u (rows) and v (columns), 1-based with a dummy column 0; match[j] = row of j.
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    match = [0] * (m + 1)
    for row in range(1, n + 1):
        match[0] = row
        free_column = 0
        best = [math.inf] * (m + 1)
        previous = [0] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[free_column] = True
            current_row, delta, next_column = match[free_column], math.inf, 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                reduced = matrix[current_row - 1][j - 1] - u[current_row] - v[j]
                if reduced < best[j]:
                    best[j], previous[j] = reduced, free_column
                if best[j] < delta:
                    delta, next_column = best[j], j
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    best[j] -= delta
            free_column = next_column
            if match[free_column] == 0:
                break
        while free_column:  # flip the augmenting path
            before = previous[free_column]
            match[free_column] = match[before]
            free_column = before
    pairs = [(match[j] - 1, j - 1) for j in range(1, m + 1) if match[j]]
    return sorted((c, r) for r, c in pairs) if transposed else sorted(pairs)
