"""Running a recipe: find its file, make its generator and budget, gather the evaluation images,
build its pipeline and run it.

A recipe file defines `pipeline(recipe: RecipeInputs) -> Pipeline`; everything a user chooses
on the command line reaches it through `RecipeInputs`, so a copied and edited recipe runs the
same way as a shipped one (`regionkit recipe ./my_seed.py ...` or `python my_seed.py ...`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from regionkit.catalog.recipes import RECIPES
from regionkit.pipelines.curation.hygiene import evaluation_keys
from regionkit.pipelines.llm.budget import UNLIMITED, Budget
from regionkit.pipelines.llm.client import Endpoint
from regionkit.pipelines.llm.generate import Generator, LLMGenerator, TemplateGenerator
from regionkit.pipelines.shard_run import Pipeline
from regionkit.pipelines.step import Resources

CACHE_ENV = "REGIONKIT_LLM_CACHE"


@dataclass
class RecipeInputs:
    """What a recipe's `pipeline` function is given.

    Attributes:
        inputs: the built datasets it reads.
        evaluation_keys: image key -> the `source:split` of an evaluation split that shows it.
        generator: writes the generated text (`template`, or an LLM).
        task_resources: what a shard's task asks for (a fraction of a core for an LLM).
        with_image: show a vision endpoint the image with the region outlined and a crop.
    """

    inputs: list[Path]
    evaluation_keys: dict[str, str]
    generator: Generator
    task_resources: Resources | None = None
    with_image: bool = False


RecipeFunction = Callable[[RecipeInputs], Pipeline]


class RecipeError(Exception):
    """A recipe that cannot be run as asked: no such recipe or file, or a bad generator."""


def load_recipe(name_or_path: str) -> RecipeFunction:
    """A shipped recipe by name, or a recipe file by path: its `pipeline` function."""
    if name_or_path in RECIPES:
        module = importlib.import_module(RECIPES[name_or_path].module)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise RecipeError(
                f"{name_or_path!r} is neither a recipe ({', '.join(RECIPES)}) nor a recipe file"
            )
        spec = importlib.util.spec_from_file_location(f"regionkit_recipe_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # where pickling looks a class's module up
        spec.loader.exec_module(module)
        _send_by_value(module)
    function = getattr(module, "pipeline", None)
    if not callable(function):
        raise RecipeError(f"{name_or_path}: a recipe file defines `pipeline(recipe)`")
    return function


def _send_by_value(module: object) -> None:
    """Steps a recipe file defines itself reach Ray workers by value: the workers cannot
    import a file that is not on their path."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def default_cache_folder() -> Path:
    """`$REGIONKIT_LLM_CACHE`, else `~/.cache/regionkit/llm` (on a cluster, give a shared one)."""
    folder = os.environ.get(CACHE_ENV)
    return Path(folder) if folder else Path.home() / ".cache" / "regionkit" / "llm"


def make_generator(
    spec: str,
    endpoint_options: dict[str, object],
    cache: Path | None,
    budget: Budget = UNLIMITED,
) -> Generator:
    """`template`, or `openai:MODEL` through `Endpoint(MODEL, **endpoint_options)`."""
    if spec == "template":
        return TemplateGenerator()
    kind, _, model = spec.partition(":")
    if kind != "openai" or not model:
        raise RecipeError(f"--llm {spec!r}: expected 'template' or 'openai:MODEL'")
    try:
        endpoint = Endpoint(model, **endpoint_options)  # type: ignore[arg-type]
    except ValueError as error:
        raise RecipeError(f"--llm {spec}: {error}") from None
    return LLMGenerator(endpoint, cache or default_cache_folder(), budget)


def recipe_inputs(
    inputs: list[Path], evaluation: list[Path], generator: Generator, with_image: bool = False
) -> RecipeInputs:
    """The inputs resolved, the evaluation images of `inputs` and `evaluation` gathered."""
    inputs = [Path(p).resolve() for p in inputs]
    keys = evaluation_keys([*inputs, *(Path(p).resolve() for p in evaluation)])
    return RecipeInputs(inputs, keys, generator, generator.task_resources, with_image)
