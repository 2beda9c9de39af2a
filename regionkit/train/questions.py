"""The questions a dataset row asks, read off its dialogue, each with what a right answer is.

Evaluation puts each question to the model alone, as a user would, and scores the answer by
the kind of its reference answer:

- `segment`: the reference holds masks (`<segK>`, alone or in words, as MUSE-style answers
  such as "You could sit on <seg0> and <seg3>.") or is `<rej>`; its targets are those
  regions (none for `<rej>`). Their words are not scored.
- `choice`: the reference is one letter and the question lists lettered options.
- `caption`: any other answer, in words; judged by an LLM against the reference.

A row without a dialogue (a builder's output) asks its groundings instead, as `refer`
questions: "Segment <text>." with the grounding's regions as targets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

REFER_QUESTION = "Segment {text}."
KINDS = ("refer", "segment", "choice", "caption")

_SEG = re.compile(r"<seg(\d+)>")
_OPTION = re.compile(r"^([A-Z])[.)]\s", re.MULTILINE)


@dataclass(frozen=True)
class Question:
    """One question about a row's image.

    Attributes:
        kind: one of `KINDS`.
        text: the user's turn, markup included.
        targets: for `refer`/`segment`, the regions a right answer segments (empty: none).
        answer: the reference answer (`choice`: its letter; `caption`: its words).
        options: for `choice`, the letters offered.
    """

    kind: str
    text: str
    targets: tuple[int, ...] = ()
    answer: str = ""
    options: tuple[str, ...] = ()


def questions(row: dict[str, Any]) -> Iterator[Question]:
    """The row's questions: its dialogue's turns, or its groundings when it has no dialogue."""
    messages = row.get("messages") or []
    if not messages:
        for grounding in row.get("groundings") or []:
            text = REFER_QUESTION.format(text=grounding["text"].strip())
            yield Question("refer", text, tuple(grounding["regions"]))
        return
    for asked, answered in pairwise(messages):
        if asked["role"] == "user" and answered["role"] == "assistant":
            yield _question(asked["content"], answered["content"].strip())


def _question(text: str, answer: str) -> Question:
    if answer == "<rej>" or _SEG.search(answer):
        targets = tuple(dict.fromkeys(int(k) for k in _SEG.findall(answer)))
        return Question("segment", text, targets)
    options = tuple(_OPTION.findall(text))
    if len(options) >= 2 and answer in options:
        return Question("choice", text, answer=answer, options=options)
    return Question("caption", text, answer=answer)


def chosen_letter(answer: str, options: tuple[str, ...]) -> str | None:
    """The option an answer picks: its first standalone letter among `options`."""
    for match in re.finditer(r"\b([A-Z])\b", answer):
        if match.group(1) in options:
            return match.group(1)
    return None
