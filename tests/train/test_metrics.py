"""Metrics against values computed by hand on constructed cases: no-target samples rejected or
not, a target wrongly rejected, several targets, and matching before scoring."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from regionkit.train.assignment import min_cost_assignment
from regionkit.train.evaluate import format_results
from regionkit.train.metrics import GresScores, MatchedScores, choice_accuracy

SHAPE = (2, 4)


def pixels(*indices: int) -> np.ndarray:
    """A 2 x 4 mask with the given flat pixels set."""
    mask = np.zeros(8, dtype=bool)
    mask[list(indices)] = True
    return mask.reshape(SHAPE)


def test_gres_scores_by_hand():
    scores = GresScores()
    scores.add([pixels(2, 3, 4, 5)], [pixels(0, 1, 2, 3)], SHAPE)  # I 2, U 6: 1/3, answered
    scores.add([], [], SHAPE)  # no target, rejected: IoU 1
    scores.add([pixels(6, 7)], [], SHAPE)  # no target, answered anyway: IoU 0, U 2
    scores.add([], [pixels(0, 1, 2)], SHAPE)  # a target rejected: IoU 0, U 3
    scores.add([pixels(0, 1, 6)], [pixels(0, 1), pixels(6, 7)], SHAPE)  # union: I 3, U 4
    result = scores.result()
    assert result["gIoU"] == pytest.approx((1 / 3 + 1 + 0 + 0 + 0.75) / 5)
    assert result["cIoU"] == pytest.approx((2 + 0 + 0 + 0 + 3) / (6 + 0 + 2 + 3 + 4))
    assert result["N-acc"] == pytest.approx(1 / 2)
    assert result["T-acc"] == pytest.approx(2 / 3)
    assert result["samples"] == 5


def test_a_share_of_nothing_is_not_a_score():
    scores = GresScores()
    scores.add([pixels(0, 1)], [pixels(0, 1)], SHAPE)  # targets only: no N-acc to take
    assert scores.result()["N-acc"] is None and scores.result()["T-acc"] == 1.0
    rejected = GresScores()
    rejected.add([], [], SHAPE)  # every union empty: no cIoU, and no T-acc
    assert rejected.result() == {
        "gIoU": 1.0, "cIoU": None, "N-acc": 1.0, "T-acc": None, "samples": 1
    }  # fmt: skip
    table = format_results({"grefcoco:val:refer": scores.result()})
    assert table.splitlines()[1].split()[1:] == ["n/a", "1.0000", "1.0000", "1.0000", "1"]


def test_matched_scores_pair_predictions_with_targets_first():
    scores = MatchedScores()
    predicted = [pixels(0, 1), pixels(4, 5, 6, 7)]
    targets = [pixels(4, 5), pixels(0, 1, 2), pixels(7)]
    # best pairs: (0, 1) IoU 2/3 and (1, 0) IoU 1/2; target 2 is unmatched: IoU 0, U 1
    scores.add(predicted, targets, SHAPE)
    scores.add([], [], SHAPE)  # nothing asked, nothing given: 1
    result = scores.result()
    assert result["gIoU"] == pytest.approx(((2 / 3 + 1 / 2 + 0) / 3 + 1) / 2)
    assert result["cIoU"] == pytest.approx((2 + 2 + 0) / (3 + 4 + 1))
    in_order = MatchedScores()  # the same masks listed in the targets' order score the same
    in_order.add([predicted[1], predicted[0]], targets, SHAPE)
    alone = MatchedScores()
    alone.add(predicted, targets, SHAPE)
    assert in_order.result() == alone.result()


def test_choice_accuracy_reads_the_first_letter():
    assert choice_accuracy(["B", "a. the dog", " C"], ["B", "B", "c"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 answers for 3 questions"):
        choice_accuracy(["A", "B"], ["A", "B", "C"])


def test_the_assignment_is_the_least_cost_one():
    rng = random.Random(1)
    for _ in range(300):
        rows, columns = rng.randint(0, 6), rng.randint(0, 6)
        cost = [
            [rng.choice([rng.random(), float(rng.randint(0, 3))]) for _ in range(columns)]
            for _ in range(rows)
        ]
        pairs = min_cost_assignment(cost)
        assert len(pairs) == min(rows, columns)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        if rows <= columns:
            best = min(
                (
                    sum(cost[i][p[i]] for i in range(rows))
                    for p in itertools.permutations(range(columns), rows)
                ),
                default=0.0,
            )
        else:
            best = min(
                sum(cost[p[j]][j] for j in range(columns))
                for p in itertools.permutations(range(rows), columns)
            )
        assert math.isclose(sum(cost[r][c] for r, c in pairs), best, abs_tol=1e-9)
