"""A builder's independent planning calls as Ray tasks (`builders.tasks.Tasks` on Ray).

Planning a big source (COCO train2017's 448 MB instances file) parses its annotations in runs;
as Ray tasks the runs spread over every CPU of the cluster while the driver only waits, and the
workers that will build the shards warm up on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ray

from regionkit.builders.tasks import Result
from regionkit.pipelines.ray_runtime import RaySession

RETRIES = 2
"""Reruns of a call whose Ray worker, node or result was lost (never of one that raised)."""


class RayTasks:
    """Calls as Ray tasks of one CPU each on the session's cluster; a single call runs here.

    An exception raised by a call is raised here as itself (not Ray's wrapper), so a
    `BuilderInputError` still reads as one.
    """

    def __init__(self, session: RaySession) -> None:
        self.session = session

    def map(
        self, function: Callable[..., Result], calls: Sequence[tuple[Any, ...]]
    ) -> list[Result]:
        if len(calls) < 2:
            return [function(*arguments) for arguments in calls]
        self.session.connect()
        remote = ray.remote(function).options(
            num_cpus=1, max_retries=RETRIES, retry_exceptions=False
        )
        refs = [remote.remote(*arguments) for arguments in calls]
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, Exception):
                raise error.cause from None
            raise
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
