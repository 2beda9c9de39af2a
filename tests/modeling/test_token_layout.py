"""Locating placeholder runs, codebook groups and answer turns in padded batches."""

from __future__ import annotations

import pytest
import torch

from regionkit.modeling.token_layout import (
    IGNORE_INDEX,
    answer_turn_ids,
    find_codebook_groups,
    placeholder_runs,
    position_ids_from_attention_mask,
)

CODEBOOK = [7, 8, 9]


def test_codebook_groups_are_found_in_order_among_valid_positions():
    ids = torch.tensor([[0, 7, 8, 9, 5, 7, 8, 9], [7, 8, 9, 4, 4, 4, 7, 8]])
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[0, 0] = False
    groups = find_codebook_groups(ids, CODEBOOK, valid, strict=False)
    assert groups.counts == [2, 1]  # sample 1's trailing "7 8" is cut off and ignored
    assert groups.sample.tolist() == [0, 0, 1] and groups.start.tolist() == [1, 5, 0]
    assert groups.positions(3).tolist() == [[1, 2, 3], [5, 6, 7], [0, 1, 2]]
    assert [s.tolist() for s in groups.starts_per_sample()] == [[1, 5], [0]]


def test_groups_outside_the_valid_positions_are_skipped():
    ids = torch.tensor([[7, 8, 9, 7, 8, 9]])
    valid = torch.tensor([[False, False, False, True, True, True]])
    assert find_codebook_groups(ids, CODEBOOK, valid, strict=True).counts == [1]


def test_strict_search_rejects_stray_codebook_tokens():
    ids = torch.tensor([[7, 8, 9, 8, 1], [7, 9, 8, 1, 1]])
    valid = torch.ones_like(ids, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\{0: \(4, 1\), 1: \(3, 0\)\}"):
        find_codebook_groups(ids, CODEBOOK, valid, strict=True)


def test_sequences_shorter_than_a_group_have_none():
    ids = torch.tensor([[7, 8]])
    groups = find_codebook_groups(
        ids, CODEBOOK, torch.ones_like(ids, dtype=torch.bool), strict=False
    )
    assert groups.counts == [0] and groups.start.numel() == 0


def test_placeholder_runs_must_be_contiguous_and_complete():
    ids = torch.tensor([1, 5, 5, 2, 5, 5, 3])
    assert placeholder_runs(ids, 5, 2, sample=0).tolist() == [[1, 2], [4, 5]]
    with pytest.raises(ValueError, match="sample 4 has 3 region placeholder tokens"):
        placeholder_runs(torch.tensor([5, 5, 5]), 5, 2, sample=4)
    with pytest.raises(ValueError, match="contiguous runs of 2"):
        placeholder_runs(torch.tensor([5, 1, 5, 1]), 5, 2, sample=0)


def test_answer_turns_number_supervised_spans():
    x = IGNORE_INDEX
    labels = torch.tensor([[x, 4, 4, x, x, 6, x], [5, x, 6, 6, x, x, x]])
    assert answer_turn_ids(labels).tolist() == [[0, 1, 1, 1, 1, 2, 2], [1, 1, 2, 2, 2, 2, 2]]


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_attention_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
