"""How a recipe's turns are chosen and written: choices fixed by the row id, question-answer pairs.

A rebuild must write the same turns, on any machine, in any worker: every choice (which
regions, which question template) is drawn from a CRC-32 of the row id and a purpose, never
from Python's `hash`, which is salted per process.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def stable_choice(seed: str, n: int) -> int:
    """An index in [0, n) fixed by `seed` (a row id and a purpose)."""
    return zlib.crc32(seed.encode("utf-8")) % n


def pick(seed: str, options: Sequence[T]) -> T:
    """One of `options`, fixed by `seed`."""
    return options[stable_choice(seed, len(options))]


def rotated(seed: str, items: list[T]) -> list[T]:
    """`items` rotated to a start fixed by `seed`: which come first varies across rows, so
    taking the first few favours no position."""
    if not items:
        return items
    start = stable_choice(seed, len(items))
    return items[start:] + items[:start]


def with_article(phrase: str) -> str:
    """`a chair`, `an apple`."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def listed(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def qa_turn(question: str, answer: str) -> list[dict[str, str]]:
    """A user question and the assistant's answer, as two messages."""
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
