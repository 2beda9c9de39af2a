"""Fine-Grained turns: a detailed description of each of a few regions, then verified.

The generator writes from everything known about the region (`facts.region_facts`): the LLM
in its own words, the template as plain sentences over the same facts. A description is kept
only when it names the region's category (or a synonym), contradicts no colour the attributes
give, names no COCO category the image is not known to hold, refers only to regions that exist,
has 25-250 words and gives nothing away (boxes, labels, slots); otherwise it is quarantined with
the reason, and the row keeps the other regions' descriptions.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from regionkit.catalog.markup import malformed_markup, references
from regionkit.pipelines.curation.dialogue import (
    listed,
    pick,
    qa_turn,
    rotated,
    stable_choice,
    with_article,
)
from regionkit.pipelines.curation.facts import is_talkable, region_facts
from regionkit.pipelines.curation.text_checks import (
    SYNONYMS,
    absent_categories,
    artefacts,
    named_categories,
    word_count,
)
from regionkit.pipelines.curation.views import region_views
from regionkit.pipelines.llm.generate import Answered, Ask, GenerateStep, text_answer_schema
from regionkit.pipelines.llm.prompts import facts_text

DESCRIPTION_WORDS = (25, 250)
COLOURS = [
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
    "silver",
    "gold",
    "beige",
]
_COLOUR = re.compile(r"\b(" + "|".join(COLOURS) + r")\b", re.I)

QUESTIONS = (
    "Describe {region} in detail.",
    "Give a detailed description of {region}.",
    "What does {region} look like? Describe it thoroughly.",
    "Write a detailed caption for {region}.",
    "Tell me everything you can see about {region}.",
)
LENGTH_HINT = " Use about {words} words."


def names_category(text: str, category: str) -> bool:
    """Whether `text` names `category`: the word itself, a plural, or a known synonym."""
    if category in named_categories(text):
        return True
    names = (category, *SYNONYMS.get(category, ()), category.split()[-1])
    return any(re.search(rf"\b{re.escape(n)}(s|es)?\b", text, re.I) for n in names)


def colour_contradiction(text: str, attributes: list[str]) -> str | None:
    """A colour the text gives where the attributes give only others, or None."""
    known = {a.lower() for a in attributes if a.lower() in COLOURS}
    said = {m.lower() for m in _COLOUR.findall(text)}
    if known and said and not said & known:
        return f"it says {sorted(said)} where the attributes say {sorted(known)}"
    return None


class DescribeRegions(GenerateStep):
    """Writes each row's Fine-Grained dialogue (task `detailed_caption`).

    Args:
        generator: writes the descriptions.
        per_row: most regions described per row.
    """

    name, version = "describe_regions", "1"
    prompt_id = "describe_region.v1"
    schema: ClassVar[dict[str, Any]] = text_answer_schema("description")

    task = "detailed_caption"
    silent_code = "no_description"
    silent_reason = "no region could be described (none talkable with a category, or none passed)"

    def __init__(self, generator: Any, per_row: int = 3, with_image: bool = False) -> None:
        super().__init__(generator, per_row)
        self.with_image = with_image

    def params(self) -> dict[str, Any]:
        return {**super().params(), "with_image": self.with_image}

    def asks(self, row: dict[str, Any]) -> list[Ask]:
        asks = []
        for k in range(len(row["regions"])):
            if not is_talkable(row, k):
                continue
            facts = region_facts(row, k)
            if facts["category"]:
                view = {"image": row["image"], "region": row["regions"][k]}
                asks.append(Ask(f"region {k}", facts, view if self.with_image else None))
        return rotated(f"{row['id']}/describe", asks)[: self.per_row]

    def prompt_images(self, ask: Ask) -> list[bytes]:
        """With `with_image`: the image with the region outlined, and a crop around it."""
        return [] if ask.view is None else region_views(ask.view["image"], ask.view["region"])

    def prompt_fields(self, ask: Ask) -> dict[str, str]:
        shown = {n: v for n, v in ask.facts.items() if n not in ("region", "region_count")}
        return {"region": str(ask.facts["region"]), "facts": facts_text(shown)}

    def template(self, ask: Ask) -> dict[str, Any]:
        facts = ask.facts
        category = facts["category"]
        where = "in the center" if facts["position"] == "center" else f"at the {facts['position']}"
        sentences = [
            f"This is {with_article(facts['size'] + ' ' + category)} {where} of the picture."
        ]
        if facts["attributes"]:
            sentences.append(f"It looks {listed(facts['attributes'][:4])}.")
        texts = [t.rstrip(" .") for t in facts["texts"][:2]]
        if texts:
            sentences.append(f"It is the one that could be called {listed(texts)}.")
        for phrase in facts["relations"][:3]:
            sentences.append(f"{phrase}." if phrase.startswith("<") else f"It {phrase}.")
        sentences += [f"{near}." for near in facts["neighbours"]]
        others = [c for c in facts["other_categories"] if c != category]
        if others:
            sentences.append(
                f"The picture also shows {listed([with_article(c) for c in others[:4]])}."
            )
        return {"description": " ".join(sentences)}

    def check(self, ask: Ask, value: dict[str, Any]) -> list[str]:
        text = value.get("description")
        if not isinstance(text, str) or not text.strip():
            return ["'description' must be a non-empty string"]
        facts = ask.facts
        problems = artefacts(text)
        words = word_count(text)
        if not DESCRIPTION_WORDS[0] <= words <= DESCRIPTION_WORDS[1]:
            problems.append(f"{words} words, not {DESCRIPTION_WORDS[0]}-{DESCRIPTION_WORDS[1]}")
        if not names_category(text, facts["category"]):
            problems.append(f"it does not name the object's category ({facts['category']!r})")
        contradiction = colour_contradiction(text, facts["attributes"])
        if contradiction:
            problems.append(contradiction)
        known = named_categories(
            " ".join([facts["category"], *facts["other_categories"], *facts["texts"]])
        )
        absent = absent_categories(text, known)
        if absent:
            problems.append(f"it names {absent}, which the image is not known to hold")
        problems += [f"{tag!r} is not a region tag" for tag in malformed_markup(text)]
        for kind, j in references(text):
            if kind != "region" or j >= facts["region_count"]:
                problems.append(f"<{kind}{j}> is not one of the image's regions")
        return problems

    def turns(self, row: dict[str, Any], answered: Answered) -> list[dict[str, str]]:
        turns: list[dict[str, str]] = []
        for facts, value in answered:
            k = facts["region"]
            text = value["description"].strip()
            question = pick(f"{row['id']}/d{k}", QUESTIONS).format(region=f"<region{k}>")
            if stable_choice(f"{row['id']}/hint{k}", 5) == 0:  # a fifth ask for a length
                question += LENGTH_HINT.format(words=round(word_count(text), -1) or 10)
            turns += qa_turn(question, text)
        return turns
