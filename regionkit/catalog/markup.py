"""The markup inside `messages[].content` (DESIGN.md §3), parsed one way everywhere.

`<regionK>` points at an input region, `<segK>` asks for region K's mask in an answer, `<rej>`
says the thing asked for is not in the image; K is a 0-based index into the row's regions.
Anything else in angle brackets that looks like markup (`<regin1>`, `<region 1>`, `<seg>`,
`<Prompt0>`) is malformed: a model trained on it learns a token that no processor maps.
"""

from __future__ import annotations

import re

MARKUP = re.compile(r"<(region|seg)(\d+)>")
"""A well-formed region or mask reference: (kind, index)."""

REJECT = "<rej>"

_TAG_LIKE = re.compile(r"</?[A-Za-z_]+ ?\d*>")


def references(text: str) -> list[tuple[str, int]]:
    """Every `<regionK>`/`<segK>` in `text`, as (kind, K), in order."""
    return [(kind, int(index)) for kind, index in MARKUP.findall(text)]


def malformed_markup(text: str) -> list[str]:
    """The tag-like pieces of `text` that are not well-formed markup."""
    return [tag for tag in _TAG_LIKE.findall(text) if tag != REJECT and not MARKUP.fullmatch(tag)]


def region(index: int) -> str:
    return f"<region{index}>"


def seg(index: int) -> str:
    return f"<seg{index}>"
