"""A quarantine line can always be written, whatever the rejected input holds."""

from __future__ import annotations

import orjson

from regionkit.builders.base import Rejected


def _line(record: object) -> dict:
    rejected = Rejected("ref 1", "malformed_ref", "refs(unc).p: ref 1: ...", {"ref": 1}, record)
    return orjson.loads(orjson.dumps(rejected.to_json("train")))


def test_a_plain_record_is_copied_whole():
    record = {"ref_id": 1, "sentences": [{"sent": "the dog", "tokens": ["the", "dog"]}]}
    assert _line(record)["record"] == record


def test_a_record_inside_itself_is_described_not_copied():
    record: dict = {"ref_id": 1, "sentences": []}
    record["sentences"].append(record)  # what a pickle's memo opcodes can build
    assert "inside itself" in _line(record)["record"]["unwritable"]


def test_a_list_shared_exponentially_is_described_not_copied():
    record: list = [1]
    for _ in range(64):  # 2**64 values once written out
        record = [record, record]
    assert "over" in _line(record)["record"]["unwritable"]
