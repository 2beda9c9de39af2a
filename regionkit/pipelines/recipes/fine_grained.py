"""Fine-Grained: a detailed description of each of a few regions per image, verified.

    regionkit recipe fine_grained --input out/coco --input out/vg --out out/fine_grained \
        --llm openai:MODEL --llm-base-url http://localhost:8000/v1

The generator writes each description from everything known about the region: its category,
the sources' texts and attributes, its relations, the regions nearest it, and its position and
size as words (an LLM never sees or writes coordinates); with `--with-image`, a vision
endpoint also sees the image with the region outlined and a crop around it. A description is
kept only when it names the region's category, contradicts no colour the attributes give,
names no category the image is not known to hold, refers only to existing regions and has
25-250 words; the rest is quarantined with the reason. Copy this file to change it.
"""

from regionkit.pipelines.curation.describe import DescribeRegions
from regionkit.pipelines.curation.hygiene import KeepEvaluationImagesOut
from regionkit.pipelines.curation.quality import QualityChecks
from regionkit.pipelines.readers import DatasetReader
from regionkit.pipelines.recipe_run import RecipeInputs
from regionkit.pipelines.shard_run import Pipeline
from regionkit.pipelines.validate import ValidateRows


def pipeline(recipe: RecipeInputs) -> Pipeline:
    return Pipeline(
        DatasetReader(recipe.inputs),
        [
            KeepEvaluationImagesOut(recipe.evaluation_keys),
            DescribeRegions(recipe.generator, per_row=3, with_image=recipe.with_image),
            QualityChecks(min_words=1, max_words=250),
            ValidateRows(),
        ],
        name="fine_grained",
        task_resources=recipe.task_resources,
    )


if __name__ == "__main__":
    from regionkit.cli import recipe_main

    raise SystemExit(recipe_main(pipeline))
