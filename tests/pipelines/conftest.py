"""Fixtures of the pipeline tests: a built dataset to run pipelines and recipes over."""

from __future__ import annotations

from pathlib import Path

import pytest

from regionkit.builders.coco import CocoBuilder
from regionkit.pipelines.build import BuildOptions, run_build


@pytest.fixture(scope="session")
def coco_dataset(ray_cluster, tmp_path_factory) -> Path:
    """A built COCO dataset of 12 images in 4 shards: the input of the pipelines here."""
    from regionkit.builders.samples.coco import write_coco_sample

    root = tmp_path_factory.mktemp("coco")
    sample = write_coco_sample(root / "src", num_images=12, seed=5, draw=False)
    out = root / "built"
    run_build(
        CocoBuilder(sample.annotations, sample.images),
        BuildOptions(out, shards=4, progress=False),
    )
    return out
