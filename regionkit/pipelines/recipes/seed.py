"""Seed: short region captions and referring turns from the sources' own texts.

    regionkit recipe seed --input out/refcoco --input out/grefcoco --input out/vg --out out/seed

Reads built datasets (RefCOCO/+/g sentences, gRefCOCO multi- and no-target expressions, VG
region descriptions and attributes, Flickr30k phrases, COCO categories) and writes one
multi-turn dialogue per image: "What is <region2>?" -> a short caption, "Where is the man in
the red shirt?" -> "<seg2>" (several `<segK>` for a multi-target text, `<rej>` for a no-target
one). Crowd regions and tiny boxes are left out; training images that an evaluation split
shows are kept out. Copy this file to change it; run the copy with `regionkit recipe PATH`.
"""

from regionkit.pipelines.curation.hygiene import KeepEvaluationImagesOut
from regionkit.pipelines.curation.quality import QualityChecks
from regionkit.pipelines.curation.seed_turns import SeedTurns
from regionkit.pipelines.readers import DatasetReader
from regionkit.pipelines.recipe_run import RecipeInputs
from regionkit.pipelines.shard_run import Pipeline
from regionkit.pipelines.validate import ValidateRows


def pipeline(recipe: RecipeInputs) -> Pipeline:
    return Pipeline(
        DatasetReader(recipe.inputs),
        [
            KeepEvaluationImagesOut(recipe.evaluation_keys),
            SeedTurns(recipe.generator, captions=4, referring=4),
            QualityChecks(min_words=1, max_words=20),
            ValidateRows(),
        ],
        name="seed",
        task_resources=recipe.task_resources,
    )


if __name__ == "__main__":
    from regionkit.cli import recipe_main

    raise SystemExit(recipe_main(pipeline))
