"""Evaluation metrics of region grounding, as the papers that report them define them.

- Generalised referring segmentation (gRefCOCO; ReLA and GSVA): each sample compares the union
  of its predicted masks with the union of its targets. gIoU is the mean of per-sample IoUs, a
  no-target sample scoring 1 when nothing is predicted (correctly rejected) and 0 otherwise;
  cIoU is the total intersection over the total union; N-acc is the share of no-target
  samples rejected, T-acc the share of target samples not rejected.
- Referring segmentation (RefCOCO/+/g): gIoU (mean IoU) and cIoU over one-target samples.
- MUSE-style multi-target answers (PixelLM): predictions are matched to targets by least
  total (1 - IoU); unmatched ones pair with an empty mask; a question's gIoU is its pairs'
  summed IoU over max(#predictions, #targets), empty against empty counting 1; cIoU sums
  intersections and unions over every pair.
- Multiple choice: the share of answers whose letter is the correct one.

A share of nothing (N-acc of a split without no-target samples, cIoU where every union is
empty) is None, shown as n/a: a 0 there would read as a model that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from regionkit.train.assignment import min_cost_assignment

Metrics = dict[str, float | int | None]


def share(part: float, whole: float) -> float | None:
    """`part / whole`, or None when there is no whole to take a share of."""
    return part / whole if whole else None


def _union(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    union = np.zeros(shape, dtype=bool)
    for mask in masks:
        union |= mask.astype(bool)
    return union


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two boolean masks."""
    return int(np.logical_and(a, b).sum()), int(np.logical_or(a, b).sum())


@dataclass
class GresScores:
    """Running gRefCOCO-style totals; `add` one sample at a time, `result` at the end."""

    iou_sum: float = 0.0
    samples: int = 0
    intersection: int = 0
    union: int = 0
    no_target: int = 0
    no_target_rejected: int = 0
    with_target: int = 0
    with_target_answered: int = 0

    def add(
        self, predicted: Sequence[np.ndarray], targets: Sequence[np.ndarray], shape: tuple[int, int]
    ) -> None:
        """One sample: its predicted masks (none when it rejected) and its targets (none for a
        no-target sample), all of `shape`."""
        prediction, truth = _union(predicted, shape), _union(targets, shape)
        empty_prediction = not prediction.any()
        inter, union = _overlap(prediction, truth)  # a false positive adds its area to the union
        if not truth.any():
            self.no_target += 1
            self.no_target_rejected += empty_prediction
            iou = 1.0 if empty_prediction else 0.0
        else:
            self.with_target += 1
            self.with_target_answered += not empty_prediction
            iou = inter / union
        self.intersection += inter
        self.union += union
        self.iou_sum += iou
        self.samples += 1

    def result(self) -> Metrics:
        return {
            "gIoU": share(self.iou_sum, self.samples),
            "cIoU": share(self.intersection, self.union),
            "N-acc": share(self.no_target_rejected, self.no_target),
            "T-acc": share(self.with_target_answered, self.with_target),
            "samples": self.samples,
        }


@dataclass
class MatchedScores:
    """Running MUSE-style totals over questions with several targets."""

    giou_sum: float = 0.0
    questions: int = 0
    intersection: int = 0
    union: int = 0

    def add(
        self, predicted: Sequence[np.ndarray], targets: Sequence[np.ndarray], shape: tuple[int, int]
    ) -> None:
        """One question: predicted masks matched to target masks, then scored pair by pair."""
        predicted = [p.astype(bool) for p in predicted]
        targets = [t.astype(bool) for t in targets]
        overlaps = [[_overlap(p, t) for t in targets] for p in predicted]
        cost = [[1 - (i / u if u else 1.0) for i, u in row] for row in overlaps]
        pairs = min_cost_assignment(cost)
        empty = np.zeros(shape, dtype=bool)
        matched_p, matched_t = {p for p, _ in pairs}, {t for _, t in pairs}
        scored = [overlaps[p][t] for p, t in pairs]
        scored += [
            _overlap(predicted[p], empty) for p in range(len(predicted)) if p not in matched_p
        ]
        scored += [_overlap(empty, targets[t]) for t in range(len(targets)) if t not in matched_t]
        count = max(len(predicted), len(targets))
        iou = sum(i / u if u else 1.0 for i, u in scored)
        self.giou_sum += iou / count if count else 1.0
        self.questions += 1
        self.intersection += sum(i for i, _ in scored)
        self.union += sum(u for _, u in scored)

    def result(self) -> Metrics:
        return {
            "gIoU": share(self.giou_sum, self.questions),
            "cIoU": share(self.intersection, self.union),
            "questions": self.questions,
        }


def choice_accuracy(predicted: Sequence[str], correct: Sequence[str]) -> float:
    """The share of answers whose first letter is the correct letter."""
    if len(predicted) != len(correct):
        raise ValueError(f"{len(predicted)} answers for {len(correct)} questions")
    if not correct:
        return 0.0
    pairs = zip(predicted, correct, strict=True)
    hits = sum(p.strip()[:1].upper() == c.strip().upper() for p, c in pairs)
    return hits / len(correct)
