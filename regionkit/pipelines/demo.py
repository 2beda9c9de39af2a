"""`regionkit demo`: every source as a small sample in its real format, built, checked, previewed.

Each sample carries its source's quirks and one broken record of every kind the builder must
quarantine, so the demo shows what a real build reports: rows out, inputs quarantined with
reasons, and `in = out + quarantined` for every unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regionkit.builders.base import RegionBuilder
from regionkit.builders.coco import CocoBuilder
from regionkit.builders.registry import available_sources, builder_class
from regionkit.builders.samples.coco import add_bad_coco_records, write_coco_sample
from regionkit.builders.samples.flickr30k import add_bad_flickr30k_records, write_flickr30k_sample
from regionkit.builders.samples.grefcoco import add_bad_grefcoco_records, write_grefcoco_sample
from regionkit.builders.samples.muse import add_bad_muse_records, write_muse_sample
from regionkit.builders.samples.refer import add_bad_refer_records, write_refer_sample
from regionkit.builders.samples.vcr import add_bad_vcr_records, write_vcr_sample
from regionkit.builders.samples.vg import add_bad_vg_records, write_vg_sample
from regionkit.pipelines.build import BuildOptions, run_build
from regionkit.pipelines.inspect import inspect_dataset
from regionkit.pipelines.preview import render_preview
from regionkit.pipelines.report import BuildReport


def _refer_writer(dataset: str) -> Callable[[Path, int], Any]:
    return lambda root, seed: write_refer_sample(root, dataset=dataset, seed=seed)


# source -> (write a sample under a folder with a seed, append the broken records)
_SAMPLES: dict[str, tuple[Callable[[Path, int], Any], Callable[[Any], Any]]] = {
    "refcoco": (_refer_writer("refcoco"), add_bad_refer_records),
    "refcoco+": (_refer_writer("refcoco+"), add_bad_refer_records),
    "refcocog": (_refer_writer("refcocog"), add_bad_refer_records),
    "refclef": (_refer_writer("refclef"), add_bad_refer_records),
    "grefcoco": (
        lambda root, seed: write_grefcoco_sample(root, seed=seed),
        add_bad_grefcoco_records,
    ),
    "vg": (lambda root, seed: write_vg_sample(root, seed=seed), add_bad_vg_records),
    "vcr": (
        lambda root, seed: write_vcr_sample(root, num_images=4, seed=seed),
        add_bad_vcr_records,
    ),
    "flickr30k": (
        lambda root, seed: write_flickr30k_sample(root, seed=seed),
        add_bad_flickr30k_records,
    ),
    "muse": (lambda root, seed: write_muse_sample(root, seed=seed), add_bad_muse_records),
}


@dataclass(frozen=True)
class DemoResult:
    """One source's demo build: its report, whether `inspect` passed, and its preview."""

    source: str
    report: BuildReport
    valid: bool
    preview: Path

    def summary(self) -> str:
        units = ", ".join(
            f"{unit} {c['in']} = {c['out']} + {c['quarantined']}"
            for unit, c in self.report.stats.to_json()["units"].items()
        )
        state = "valid" if self.valid else "INVALID"
        return f"{self.source:22} {self.report.stats.rows:5} rows  {state:7}  {units}"


def demo_builder(source: str, root: Path, seed: int) -> RegionBuilder:
    """Write `source`'s sample (broken records included) under `root`; its builder."""
    if source == "coco":
        sample = write_coco_sample(root, num_images=24, seed=seed)
        add_bad_coco_records(sample)
        return CocoBuilder(sample.annotations, sample.images)
    write, add_bad = _SAMPLES[source]
    sample = write(root, seed)
    add_bad(sample)
    return builder_class(source)(sample.root, sample.images)


def demo_sources() -> list[str]:
    """The sources the demo can write a sample of."""
    return [s for s in available_sources() if s == "coco" or s in _SAMPLES]


def run_demo_recipes(
    out: Path, built: list[Path], ray_address: str | None = None, progress: bool = True
) -> list[DemoResult]:
    """Run every recipe (template generator) over the demo's built datasets that it reads;
    each into `out/recipes/<recipe>`, inspected and previewed like a source."""
    from regionkit.catalog.recipes import RECIPES
    from regionkit.pipelines.build import run_pipeline
    from regionkit.pipelines.llm.generate import TemplateGenerator
    from regionkit.pipelines.recipe_run import load_recipe, recipe_inputs

    results = []
    for name, recipe in RECIPES.items():
        inputs = [path for path in built if path.name in recipe.sources]
        if not inputs:
            continue
        pipeline = load_recipe(name)(recipe_inputs(inputs, [], TemplateGenerator()))
        dataset = out / "recipes" / name
        options = BuildOptions(
            out=dataset,
            ray_address=ray_address,
            overwrite=True,
            progress=progress,
            name=f"regionkit-demo-{name}",
        )
        report = run_pipeline(pipeline, options)
        valid = inspect_dataset(dataset).ok
        preview = render_preview(dataset, out / "previews" / f"recipe-{name}.png", n=8)
        results.append(DemoResult(f"{name} (recipe)", report, valid, preview))
    return results


def run_demo(
    out: Path,
    sources: list[str],
    seed: int = 0,
    ray_address: str | None = None,
    progress: bool = True,
) -> list[DemoResult]:
    """Write, build, inspect and preview each source under `out`; one result per source."""
    results = []
    for source in sources:
        builder = demo_builder(source, out / "sources" / source, seed)
        dataset = out / source
        report = run_build(
            builder,
            BuildOptions(
                out=dataset,
                items_per_shard=8,
                ray_address=ray_address,
                overwrite=True,
                progress=progress,
                name=f"regionkit-demo-{source}",
            ),
        )
        valid = inspect_dataset(dataset).ok
        preview = render_preview(dataset, out / "previews" / f"{source}.png", n=8)
        results.append(DemoResult(source, report, valid, preview))
    return results
