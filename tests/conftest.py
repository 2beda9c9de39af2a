"""Shared fixtures: one Ray cluster per test session, and sample sources written per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before Ray is imported anywhere: no auth token handshake, no usage reporting, quiet workers.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

from regionkit.builders.samples.coco import CocoSample, write_coco_sample


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """Start one embedded Ray for the whole session (it costs seconds) and give its address."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def coco_sample(tmp_path: Path) -> CocoSample:
    """A small COCO-format source with multi-part polygons, crowd and compressed RLE."""
    return write_coco_sample(tmp_path / "coco", num_images=6, seed=1)
