"""Relation: how two regions relate, as descriptions, question-answer pairs and multiple choice.

    regionkit recipe relation --input out/vg --input out/flickr30k --input out/grefcoco \
        --input out/coco --out out/relation

Pairs come from Visual Genome triplets, Flickr30k captions that mention two entities, gRefCOCO
expressions with several targets, and boxes clearly side by side or one above the other. Each
pair gets a description that must express its facts (written by the generator; the LLM in its
own words, checked for every predicate and against the boxes), a question read off the facts,
and a four-way multiple-choice question whose distractors are false for the pair, the correct
letter balanced across the dataset. Copy this file to change it.
"""

from regionkit.pipelines.curation.hygiene import KeepEvaluationImagesOut
from regionkit.pipelines.curation.quality import QualityChecks
from regionkit.pipelines.curation.relate import RelateRegions
from regionkit.pipelines.readers import DatasetReader
from regionkit.pipelines.recipe_run import RecipeInputs
from regionkit.pipelines.shard_run import Pipeline
from regionkit.pipelines.validate import ValidateRows


def pipeline(recipe: RecipeInputs) -> Pipeline:
    return Pipeline(
        DatasetReader(recipe.inputs),
        [
            KeepEvaluationImagesOut(recipe.evaluation_keys),
            RelateRegions(recipe.generator, per_row=3),
            QualityChecks(min_words=1, max_words=150),
            ValidateRows(),
        ],
        name="relation",
        task_resources=recipe.task_resources,
    )


if __name__ == "__main__":
    from regionkit.cli import recipe_main

    raise SystemExit(recipe_main(pipeline))
