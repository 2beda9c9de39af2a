"""The plain-data unpickler: Python 2 strings as text, and no pickle can run code."""

from __future__ import annotations

import os
import pickle
import pickletools
from collections import Counter

import pytest

from regionkit.builders.base import BuilderInputError
from regionkit.builders.safe_pickle import load_plain_pickle, loads_plain
from regionkit.builders.samples.refer import py2_pickle

# What Python 2.7's pickle.dump([{'raw': 'caf\xc3\xa9', 'n': 1}, ...], f) writes in protocol 0.
PY2_PROTOCOL_0 = (
    b"(lp0\n(dp1\nS'raw'\np2\nS'caf\\xc3\\xa9'\np3\nsS'n'\np4\nI1\nsa"
    b"(dp5\ng2\nS'latin \\xe9'\np6\nsg4\nL900300255917L\nsa."
)


def _opcodes(data: bytes) -> Counter[str]:
    return Counter(op.name for op, _, _ in pickletools.genops(data))


def test_python2_byte_strings_come_back_as_text_keys_included():
    value = [
        {"raw": "The Café", "sent": "the cafe", "ann_id": 1719310, "tokens": ["the", "cafe"]},
        {"raw": "the cafe", "sent": b"caf\xe9", "ann_id": 900300255917, "small": 7, "mid": 300},
        {"long": "x" * 300, "negative": -5, "flag": True, "none": None, "float": 0.25},
    ]
    data = py2_pickle(value)
    opcodes = _opcodes(data)
    # the opcodes Python 2 writes for its str, int and long, memo references for repeats
    for name in ("SHORT_BINSTRING", "BINSTRING", "BININT", "BININT1", "BININT2", "LONG1"):
        assert opcodes[name] > 0, name
    assert opcodes["BINPUT"] > 0 and opcodes["BINGET"] > 0
    assert not {"BINUNICODE", "SHORT_BINUNICODE", "GLOBAL", "STACK_GLOBAL"} & set(opcodes)

    loaded = loads_plain(data)
    assert loaded == [
        {"raw": "The Café", "sent": "the cafe", "ann_id": 1719310, "tokens": ["the", "cafe"]},
        {"raw": "the cafe", "sent": "café", "ann_id": 900300255917, "small": 7, "mid": 300},
        {"long": "x" * 300, "negative": -5, "flag": True, "none": None, "float": 0.25},
    ]
    assert all(type(key) is str for record in loaded for key in record)


def test_python2_protocol_0_file_loads(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(PY2_PROTOCOL_0)
    assert load_plain_pickle(path) == [
        {"raw": "café", "n": 1},
        {"raw": "latin é", "n": 900300255917},
    ]
    written = py2_pickle([{"raw": "café", "n": 1}, {"raw": b"latin \xe9", "n": 900300255917}], 0)
    assert written == PY2_PROTOCOL_0  # the fixture writer writes what Python 2 wrote


def test_bytes_that_are_not_utf8_fall_back_to_latin1_one_by_one():
    assert loads_plain(py2_pickle([b"caf\xe9 \xc3\xa9", b"\xff"])) == ["café é", "ÿ"]


class _RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}, _RunsACommand(f"touch {marker}")], protocol))
    with pytest.raises(BuilderInputError) as error:
        load_plain_pickle(path)
    message = str(error.value)
    assert str(path) in message and f"{os.system.__module__}.system" in message
    assert "nothing was imported or called" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "data, asked_for",
    [
        (b"(S'echo hi'\nios\nsystem\n.", "os.system"),  # protocol 0 INST
        (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),  # GLOBAL + REDUCE
        (pickle.dumps(b"raw", protocol=2), "_codecs.encode"),  # how Python 3 writes bytes
    ],
)
def test_every_global_is_refused(tmp_path, data, asked_for):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(data)
    with pytest.raises(BuilderInputError, match=rf"refs\(unc\)\.p: refused .*{asked_for}"):
        load_plain_pickle(path)


def test_persistent_ids_are_refused():
    with pytest.raises(pickle.UnpicklingError, match="persistent id"):
        loads_plain(b"Pfile:///etc/passwd\n.")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty or truncated"),
        (py2_pickle([{"a": 1}] * 3)[:-9], "truncated"),
        (b"\x80\x02]q\x00(K\x01K\x02u.", "not a valid pickle"),  # SETITEMS on a list
        (b"\x80\x02}q\x00(K\x01e.", "not a valid pickle"),  # APPENDS on a dict
        (b"\x80\x02h\x05.", "not a valid pickle"),  # a memo reference to nothing
    ],
)
def test_damaged_pickles_are_a_clear_error_naming_the_file(tmp_path, data, message):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(data)
    with pytest.raises(BuilderInputError, match=rf"refs\(unc\)\.p: .*{message}"):
        load_plain_pickle(path)
