"""Relation predicates grouped by meaning, so a multiple-choice distractor is never a synonym of
the true predicate ('next to' for 'beside'), and the distractors a question offers are
plausible relations that are false for the pair."""

from __future__ import annotations

import re

SYNONYMS = (
    ("on", "on top of", "atop", "sitting on", "standing on", "lying on", "laying on",
     "parked on", "resting on", "mounted on", "sitting on top of"),
    ("near", "next to", "beside", "by", "close to", "adjacent to", "alongside"),
    ("under", "below", "beneath", "underneath"),
    ("above", "over"),
    ("in", "inside", "inside of", "within"),
    ("wearing", "wears", "dressed in", "has on"),
    ("holding", "holds", "carrying", "carries", "holding onto"),
    ("has", "have", "with"),
    ("behind", "in back of"),
    ("in front of",),
    ("riding", "rides", "riding on"),
    ("eating", "eats"),
    ("looking at", "watching", "looks at"),
    ("hanging on", "hanging from", "attached to"),
    ("covering", "covers", "covered by"),
    ("of", "part of", "belonging to"),
)  # fmt: skip
"""Each tuple is one meaning; its first predicate names it."""

_GROUP = {predicate: group[0] for group in SYNONYMS for predicate in group}

DISTRACTOR_POOL = (
    "on", "wearing", "holding", "has", "riding", "eating", "looking at", "hanging on", "covering",
)  # fmt: skip
"""Predicates a question may offer as false options: frequent in Visual Genome, each its own
meaning. Spatial ones (near, behind, under, in) are left out: Visual Genome annotates few of
the spatial relations that hold, so an unannotated one is often true."""

IMPLIED = {
    "riding": {"on"},
    "hanging on": {"on"},
    "on": {"riding", "hanging on"},
    "wearing": {"has"},
    "holding": {"has"},
    "eating": {"holding"},
    "has": {"wearing", "holding"},
}
"""Meanings that are usually true when the key is (a rider is on the horse): never offered as
false beside it."""


def meaning(predicate: str) -> str:
    """The meaning a predicate belongs to (itself when it is in no group)."""
    normalised = " ".join(predicate.lower().split())
    return _GROUP.get(normalised, normalised)


def distractors(true_predicates: list[str]) -> list[str]:
    """Pool predicates whose meaning differs from every true one, in pool order."""
    taken = {meaning(p) for p in true_predicates}
    taken |= {implied for m in list(taken) for implied in IMPLIED.get(m, ())}
    return [p for p in DISTRACTOR_POOL if meaning(p) not in taken]


def expresses(text: str, predicate: str) -> bool:
    """Whether `text` says `predicate` in some wording of its meaning."""
    lowered = f" {' '.join(re.sub(r'[^a-z0-9]+', ' ', text.lower()).split())} "
    wordings = next((g for g in SYNONYMS if g[0] == meaning(predicate)), (predicate,))
    return any(f" {w} " in lowered for w in (predicate.lower(), *wordings))
