"""Reading untrusted pickles (refer's `refs(<split_by>).p`) as plain data, never as code.

A pickle is a program: its GLOBAL/STACK_GLOBAL/INST opcodes import any callable and REDUCE calls
it, so `pickle.load` on a downloaded file can run `os.system`. The unpickler here refuses every
global (`find_class`) and every persistent id, so only what the opcodes build directly loads:
lists, dicts, tuples, sets, strings, numbers, booleans and None. Extension codes (EXT1/2/4) also
resolve through `find_class`, unless the process registered copyreg extensions, which nothing in
regionkit does.

The refer files were written by Python 2, whose `str` is a byte string (STRING, BINSTRING and
SHORT_BINSTRING opcodes). They are decoded to `str` as they load, dict keys included, by the C
unpickler itself (decoding afterwards in Python costs seconds on RefCOCO): as UTF-8 (annotators
typed non-ASCII text), with any byte that is not valid UTF-8 read as latin-1, which maps every
byte to a character, so no text is lost or refused. Python 3 `bytes` objects stay bytes.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from regionkit.builders.base import BuilderInputError
from regionkit.builders.files import LATIN1_FALLBACK, paused_gc


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something other than plain data (a global or a persistent id)."""


class PlainUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that builds plain containers and scalars and refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            f"it asks for the global {module}.{name}; only plain containers and scalars are "
            "allowed, so nothing was imported or called"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            "it holds a persistent id; only plain containers and scalars are allowed"
        )


def loads_plain(data: bytes) -> Any:
    """Plain data from pickle bytes of any protocol; raises on globals and malformed streams."""
    return PlainUnpickler(io.BytesIO(data), encoding="utf-8", errors=LATIN1_FALLBACK).load()


def load_plain_pickle(path: Path) -> Any:
    """The plain data in the pickle at `path`, or `BuilderInputError` naming the file and why."""
    try:
        with paused_gc():
            return loads_plain(path.read_bytes())
    except UnsafePickleError as error:
        raise BuilderInputError(f"{path}: refused to load the pickle: {error}") from None
    except EOFError:
        raise BuilderInputError(
            f"{path}: the pickle is empty or truncated; download the file again"
        ) from None
    # what the C unpickler raises on a damaged stream, depending on which opcode it trips on
    except (
        pickle.UnpicklingError,
        AttributeError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
    ) as error:
        raise BuilderInputError(
            f"{path}: not a valid pickle ({type(error).__name__}: {error}); the file may be "
            "damaged, download it again"
        ) from None
