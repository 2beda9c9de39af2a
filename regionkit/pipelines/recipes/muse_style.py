"""MUSE-style: reasoning questions whose answers segment several instances, each once.

    regionkit recipe muse_style --input out/coco --input out/grefcoco --out out/muse_style \
        --llm openai:MODEL --llm-base-url http://localhost:8000/v1

For images whose every instance is annotated (COCO), the generator writes a question that
names a goal rather than the categories, answered by marking two or more instances with
`<segK>` (checked: targets distinct, each marked exactly once, all among the image's whole
categories, no target's category named in the question); then "all the <category>" turns and,
for a fifth of the images, a goal nothing there serves, answered `<rej>`. gRefCOCO texts with
several targets become turns too. Copy this file to change it.
"""

from regionkit.pipelines.curation.hygiene import KeepEvaluationImagesOut
from regionkit.pipelines.curation.quality import QualityChecks
from regionkit.pipelines.curation.reason_seg import ReasonSegmentation
from regionkit.pipelines.readers import DatasetReader
from regionkit.pipelines.recipe_run import RecipeInputs
from regionkit.pipelines.shard_run import Pipeline
from regionkit.pipelines.validate import ValidateRows


def pipeline(recipe: RecipeInputs) -> Pipeline:
    return Pipeline(
        DatasetReader(recipe.inputs),
        [
            KeepEvaluationImagesOut(recipe.evaluation_keys),
            ReasonSegmentation(recipe.generator),
            QualityChecks(min_words=1, max_words=60, min_targets=2),
            ValidateRows(),
        ],
        name="muse_style",
        task_resources=recipe.task_resources,
    )


if __name__ == "__main__":
    from regionkit.cli import recipe_main

    raise SystemExit(recipe_main(pipeline))
