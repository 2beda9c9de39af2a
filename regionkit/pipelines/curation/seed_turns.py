"""Seed turns: short region captions and referring turns from the sources' own texts.

For one image: "What is <region2>?" -> a short caption, for a few talkable regions (the
generator writes the caption: the template takes the shortest source text, or the attributes
and the category; an LLM condenses all of them), then "Where is <text>?" -> `<segK>` for
a few of the source's referring texts (several `<segK>` for a multi-target gRefCOCO text,
`<rej>` for a no-target one). Which regions, texts and question templates are used is fixed by
the row id, so a rebuild writes the same turns.
"""

from __future__ import annotations

from typing import Any, ClassVar

from regionkit.catalog.markup import REJECT, region, seg
from regionkit.pipelines.curation.dialogue import pick, qa_turn, rotated
from regionkit.pipelines.curation.facts import can_target, is_talkable, region_facts
from regionkit.pipelines.curation.text_checks import artefacts, word_count
from regionkit.pipelines.llm.generate import Answered, Ask, GenerateStep, text_answer_schema
from regionkit.pipelines.llm.prompts import facts_text

CAPTION_QUESTIONS = (
    "What is {region}?",
    "What is in {region}?",
    "Describe {region} in a few words.",
    "Give a short caption for {region}.",
    "What do you see in {region}?",
    "Name the object in {region} briefly.",
)
REFER_QUESTIONS = (
    "Where is {text}?",
    "Segment {text}.",
    "Please show {text}.",
    "Find {text} in the image.",
    "Which part of the image is {text}?",
)
CAPTION_WORDS = (1, 20)


class SeedTurns(GenerateStep):
    """Writes each row's Seed dialogue (task `seed`).

    Args:
        generator: writes the captions.
        captions: most caption turns per row.
        referring: most referring turns per row.
    """

    name, version = "seed_turns", "1"
    prompt_id = "seed_caption.v1"
    schema: ClassVar[dict[str, Any]] = text_answer_schema("caption")

    task = "seed"
    silent_code = "nothing_to_say"
    silent_reason = "no talkable region with a text or a category, and no referring text"

    def __init__(self, generator: Any, captions: int = 4, referring: int = 4) -> None:
        super().__init__(generator, per_row=captions)
        self.referring = referring

    def params(self) -> dict[str, Any]:
        return {**super().params(), "referring": self.referring}

    def asks(self, row: dict[str, Any]) -> list[Ask]:
        eligible = []
        for k in range(len(row["regions"])):
            facts = region_facts(row, k)
            if is_talkable(row, k) and (facts["texts"] or facts["category"]):
                eligible.append(Ask(f"region {k}", facts))
        return rotated(f"{row['id']}/captions", eligible)[: self.per_row]

    def prompt_fields(self, ask: Ask) -> dict[str, str]:
        facts = {n: ask.facts[n] for n in ("category", "attributes", "texts", "size")}
        return {"facts": facts_text(facts)}

    def template(self, ask: Ask) -> dict[str, Any]:
        facts = ask.facts
        short = [t for t in facts["texts"] if word_count(t) <= CAPTION_WORDS[1]]
        if short:
            return {"caption": min(short, key=lambda t: (len(t), t))}
        return {"caption": " ".join([*facts["attributes"][:2], facts["category"] or "object"])}

    def check(self, ask: Ask, value: dict[str, Any]) -> list[str]:
        caption = value.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            return ["'caption' must be a non-empty string"]
        problems = artefacts(caption)
        words = word_count(caption)
        if not CAPTION_WORDS[0] <= words <= CAPTION_WORDS[1]:
            problems.append(
                f"the caption has {words} words, not {CAPTION_WORDS[0]}-{CAPTION_WORDS[1]}"
            )
        if "<" in caption:
            problems.append("the caption must not hold markup")
        return problems

    def turns(self, row: dict[str, Any], answered: Answered) -> list[dict[str, str]]:
        turns: list[dict[str, str]] = []
        for facts, value in answered:
            k = facts["region"]
            question = pick(f"{row['id']}/q{k}", CAPTION_QUESTIONS)
            turns += qa_turn(question.format(region=region(k)), value["caption"].strip())
        for text, targets in self._referring(row):
            question = pick(f"{row['id']}/r{text}", REFER_QUESTIONS)
            reply = " and ".join(seg(k) for k in targets) if targets else REJECT
            turns += qa_turn(question.format(text=text), reply)
        return turns

    def _referring(self, row: dict[str, Any]) -> list[tuple[str, list[int]]]:
        """Referring texts whose targets all have masks and are talkable (or no-target ones)."""
        usable = []
        seen = set()
        for grounding in row["groundings"]:
            text = " ".join(grounding["text"].split())
            targets = sorted(set(grounding["regions"]))
            if not text or text in seen:
                continue
            if all(can_target(row, k) for k in targets):
                seen.add(text)
                usable.append((text, targets))
        return rotated(f"{row['id']}/referring", usable)[: self.referring]
