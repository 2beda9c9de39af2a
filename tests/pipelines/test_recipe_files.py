"""Recipes as files: a copied recipe with a step of its own runs by path on Ray workers (which
cannot import the file) and as a script; unknown recipes and generators are refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from regionkit.cli import EXIT_BAD_INPUT, main, recipe_main
from regionkit.pipelines.llm.client import Endpoint
from regionkit.pipelines.llm.generate import LLMGenerator, TemplateGenerator
from regionkit.pipelines.recipe_run import load_recipe, recipe_inputs
from regionkit.pipelines.step import Resources

MY_RECIPE = textwrap.dedent(
    '''
    """Seed, then every answer shouted: a recipe with a step of its own."""
    from dataclasses import replace

    from regionkit.pipelines.curation.seed_turns import SeedTurns
    from regionkit.pipelines.readers import DatasetReader
    from regionkit.pipelines.shard_run import Pipeline
    from regionkit.pipelines.step import Step, StepResult


    class Shout(Step):
        name, version = "shout", "1"

        def process(self, rows):
            def loud(message):
                if message["role"] == "assistant" and "<" not in message["content"]:
                    return {**message, "content": message["content"].upper()}
                return message

            shouted = [[loud(m) for m in b.row["messages"]] for b in rows]
            return StepResult(
                [replace(b, row={**b.row, "messages": m}) for b, m in zip(rows, shouted)]
            )


    def pipeline(recipe):
        steps = [SeedTurns(recipe.generator), Shout()]
        return Pipeline(DatasetReader(recipe.inputs), steps, name="loud_seed")
    '''
)


def _answers(dataset: Path) -> list[str]:
    rows = [
        r
        for f in sorted((dataset / "data").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    return [m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant"]


def test_a_recipe_file_with_its_own_step_runs_by_path_and_as_a_script(
    ray_cluster, coco_dataset, tmp_path
):
    path = tmp_path / "loud_seed.py"
    path.write_text(MY_RECIPE)
    out = tmp_path / "by_path"
    assert (
        main(
            ["recipe", str(path), "--input", str(coco_dataset), "--out", str(out), "--no-progress"]
        )
        == 0
    )
    answers = _answers(out)
    assert answers and all(a == a.upper() for a in answers)
    assert any(a.isalpha() for a in answers)  # the categories, shouted

    script = tmp_path / "as_script"
    argv = ["--input", str(coco_dataset), "--out", str(script), "--no-progress"]
    assert recipe_main(load_recipe(str(path)), argv) == 0
    assert _answers(script) == answers


def test_unknown_recipes_and_generators_are_refused(coco_dataset, tmp_path, capsys):
    base = ["--input", str(coco_dataset), "--out", str(tmp_path / "x")]
    assert main(["recipe", "no_such_recipe", *base]) == EXIT_BAD_INPUT
    assert "neither a recipe" in capsys.readouterr().err
    assert main(["recipe", "seed", *base, "--llm", "anthropic:claude"]) == EXIT_BAD_INPUT
    assert "expected 'template' or 'openai:MODEL'" in capsys.readouterr().err
    assert (
        main(["recipe", "seed", *base, "--llm", "openai:m", "--llm-in-flight", "0"])
        == EXIT_BAD_INPUT
    )
    assert not (tmp_path / "x").exists()


def test_an_llm_recipe_asks_a_fraction_of_a_core_per_shard(coco_dataset, tmp_path):
    seed = load_recipe("seed")
    llm = LLMGenerator(Endpoint("m", "http://127.0.0.1:9/v1"), tmp_path)
    assert seed(recipe_inputs([coco_dataset], [], llm)).resources() == Resources(cpus=0.25)
    assert seed(recipe_inputs([coco_dataset], [], TemplateGenerator())).resources() == Resources()
