"""The recipes: which training dataset each makes, from which sources, and where its file is.

A recipe is a readable Python file (`regionkit/pipelines/recipes/<name>.py`) that assembles a
pipeline; this table names them for `regionkit recipes` without importing any.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """A recipe as the catalog lists it.

    Attributes:
        name: what `regionkit recipe NAME` takes.
        title: one line.
        sources: the built datasets it reads (catalog source names).
        module: the recipe file's module.
    """

    name: str
    title: str
    sources: tuple[str, ...]
    module: str


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "seed",
            "Seed: short region captions and referring turns from the sources' own texts",
            ("refcoco", "refcoco+", "refcocog", "grefcoco", "vg", "flickr30k", "coco"),
            "regionkit.pipelines.recipes.seed",
        ),
        Recipe(
            "fine_grained",
            "Fine-Grained: a verified detailed description per region",
            ("coco", "refcoco", "refcoco+", "refcocog", "vg"),
            "regionkit.pipelines.recipes.fine_grained",
        ),
        Recipe(
            "relation",
            "Relation: descriptions, questions and multiple choice about how two regions relate",
            ("vg", "flickr30k", "grefcoco", "coco"),
            "regionkit.pipelines.recipes.relation",
        ),
        Recipe(
            "muse_style",
            "MUSE-style: reasoning questions answered by several masks, and no-target ones",
            ("coco", "grefcoco"),
            "regionkit.pipelines.recipes.muse_style",
        ),
    )
}
