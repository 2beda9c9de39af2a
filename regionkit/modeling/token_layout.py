"""Finding the region model's special token runs in a batch of sequences.

Two kinds of runs matter: a region's ``replay_grid**2`` feature placeholders, and a target's
``num_scales * tokens_per_scale`` codebook tokens. Both are located per sample, in order of
appearance, which is how regions pair with boxes and targets with masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "CodebookGroups",
    "answer_turn_ids",
    "find_codebook_groups",
    "placeholder_runs",
    "position_ids_from_attention_mask",
]

IGNORE_INDEX = -100
"""Label of positions without a text loss (transformers' convention)."""


@dataclass
class CodebookGroups:
    """Complete codebook groups found in a batch, in (sample, position) order.

    Attributes:
        sample: ``(N,)`` batch index of each group.
        start: ``(N,)`` sequence position of each group's first codebook token.
        counts: groups per sample, length B.
    """

    sample: Tensor
    start: Tensor
    counts: list[int]

    def positions(self, size: int) -> Tensor:
        """``(N, size)`` positions of every token of every group."""
        return self.start[:, None] + torch.arange(size, device=self.start.device)

    def starts_per_sample(self) -> list[Tensor]:
        """Group start positions split by sample."""
        return list(torch.split(self.start, self.counts))


def find_codebook_groups(
    input_ids: Tensor, codebook_ids: list[int], valid: Tensor, *, strict: bool
) -> CodebookGroups:
    """Locate runs of exactly ``codebook_ids`` (in order) among valid positions.

    Args:
        input_ids: ``(B, L)``.
        codebook_ids: the S*T distinct codebook token ids of one target, in order.
        valid: ``(B, L)`` bool, positions that may hold a group (attended, and for generation
            only the generated part).
        strict: raise ``ValueError`` when a valid codebook token is not part of a complete
            group (training data must be well formed); otherwise such tokens are ignored (a
            generation cut off mid-group).

    Returns:
        ``CodebookGroups``.
    """
    size = len(codebook_ids)
    batch, length = input_ids.shape
    ids = torch.tensor(codebook_ids, device=input_ids.device)
    if length < size:
        starts = torch.zeros(batch, 0, dtype=torch.bool, device=input_ids.device)
    else:
        windows = input_ids.unfold(1, size, 1)  # (B, L - size + 1, size)
        valid_windows = valid.unfold(1, size, 1).all(dim=-1)
        starts = (windows == ids).all(dim=-1) & valid_windows
    sample, start = starts.nonzero(as_tuple=True)
    counts = starts.sum(dim=1).tolist()
    if strict:
        tokens = (torch.isin(input_ids, ids) & valid).sum(dim=1).tolist()
        broken = {b: (tokens[b], counts[b]) for b in range(batch) if tokens[b] != counts[b] * size}
        if broken:
            raise ValueError(
                f"codebook tokens must come in complete groups of {size} in order {codebook_ids}; "
                f"samples {{index: (codebook tokens, complete groups)}} = {broken}"
            )
    return CodebookGroups(sample=sample, start=start, counts=counts)


def placeholder_runs(input_ids: Tensor, token_id: int, run_length: int, sample: int) -> Tensor:
    """Positions of one sample's placeholder runs, ``(R, run_length)``.

    Args:
        input_ids: ``(L,)`` one sample.
        token_id: the placeholder id.
        run_length: tokens per run.
        sample: batch index, quoted in errors.

    Raises:
        ValueError: when the placeholders do not split into contiguous runs of ``run_length``.
    """
    positions = (input_ids == token_id).nonzero().flatten()
    if positions.numel() % run_length:
        raise ValueError(
            f"sample {sample} has {positions.numel()} region placeholder tokens, not a multiple "
            f"of replay_grid**2 = {run_length}"
        )
    runs = positions.reshape(-1, run_length)
    if runs.numel() and not bool((runs[:, -1] - runs[:, 0] == run_length - 1).all()):
        raise ValueError(
            f"sample {sample}: region placeholder tokens must come in contiguous runs of "
            f"{run_length}, got positions {positions.tolist()}"
        )
    return runs


def answer_turn_ids(labels: Tensor) -> Tensor:
    """Index of the supervised span (answer turn) each position belongs to, ``(B, L)``.

    A turn is a maximal run of positions whose label is not ``IGNORE_INDEX``; positions before
    the first turn get 0, the first turn 1, and ignored positions keep the last turn's index.
    """
    supervised = labels != IGNORE_INDEX
    previous = torch.nn.functional.pad(supervised[:, :-1], (1, 0), value=False)
    return (supervised & ~previous).long().cumsum(dim=1)


def position_ids_from_attention_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over attended tokens only (``generate``'s rule), ``(B, L)``.

    Left padding then gives every sample the positions it would have unpadded.
    """
    positions = attention_mask.long().cumsum(dim=-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)
