"""Planning calls as Ray tasks: run in workers, results in order, errors as themselves."""

from __future__ import annotations

import os

import pytest

from regionkit.builders.base import BuilderInputError
from regionkit.builders.instances import index_instances
from regionkit.builders.samples.coco import add_bad_coco_records
from regionkit.pipelines.ray_runtime import RaySession
from regionkit.pipelines.ray_tasks import RayTasks


def test_calls_run_in_ray_workers_and_come_back_in_order(ray_cluster):
    def pid_and_square(value: int) -> tuple[int, int]:  # local: Ray ships it by value
        return os.getpid(), value * value

    results = RayTasks(RaySession()).map(pid_and_square, [(k,) for k in range(6)])
    assert [square for _, square in results] == [k * k for k in range(6)]
    assert os.getpid() not in {pid for pid, _ in results}


def test_a_call_that_raises_raises_its_own_error_here(ray_cluster, coco_sample, tmp_path):
    calls = [(coco_sample.annotations,), (tmp_path / "missing.json",)]
    with pytest.raises(BuilderInputError, match=r"missing\.json: file not found$"):
        RayTasks(RaySession()).map(index_instances, calls)


def test_an_index_planned_as_ray_tasks_is_the_one_planned_in_process(ray_cluster, coco_sample):
    add_bad_coco_records(coco_sample)
    here = index_instances(coco_sample.annotations, chunk_size=512)
    on_ray = index_instances(coco_sample.annotations, RayTasks(RaySession()), chunk_size=512)
    assert (on_ray.images, on_ray.categories) == (here.images, here.categories)
    assert {k: v.tolist() for k, v in on_ray.spans.items()} == {
        k: v.tolist() for k, v in here.spans.items()
    }
    assert [(p.key, p.code, p.reason) for p in on_ray.problems] == [
        (p.key, p.code, p.reason) for p in here.problems
    ]
