"""Shards as Ray tasks: submitted a few at a time, retried on Ray's failures, timed out by name.

Each shard is one task running `run_shard`, which writes the shard's files itself and returns
its receipt. What can go wrong is kept apart:

- Ray's own failures (a worker process or node lost, a result object lost) are retried by Ray
  up to `retries` times, the shard rebuilt from scratch; its files are then the same bytes.
- An exception raised by the pipeline's code is not retried (it would fail the same way): the
  shard fails with the error, other shards go on, and the build ends as failed.
- A shard running past `timeout` seconds (counted from its submission) is cancelled and
  reported by name.
- Ctrl-C cancels the shards in flight. Ray's wait checks for signals from C++ and, once in a
  while, loses the KeyboardInterrupt and waits on (a build was seen sitting in `ray.wait`
  minutes after Ctrl-C), so shards are awaited in short polls and a Ctrl-C is also noted by a
  handler of our own, checked after every poll.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from tqdm.auto import tqdm

from regionkit.pipelines.ray_runtime import RaySession
from regionkit.pipelines.shard_run import Pipeline, run_shard
from regionkit.pipelines.sharding import Shard

POLL_SECONDS = 1.0
"""How often running shards are checked against their timeout and for a Ctrl-C."""


@dataclass(frozen=True)
class Schedule:
    """How shards are run.

    Attributes:
        max_in_flight: shards submitted at once; None for twice the cluster's CPUs.
        retries: how often Ray reruns a shard whose worker, node or result was lost.
        timeout: seconds a shard may run from its submission; None for no limit.
        progress: show a progress bar.
        label: the progress bar's label.
    """

    max_in_flight: int | None = None
    retries: int = 2
    timeout: float | None = None
    progress: bool = True
    label: str = "build"


class ShardsFailed(Exception):
    """Some shards did not finish; the message says which and why (finished ones are kept).

    Attributes:
        kinds: how many shards failed with each exception type (`BudgetExhausted`,
            `GetTimeoutError`, ...), so a caller can tell a spent budget from a bug.
    """

    def __init__(self, message: str, kinds: Counter[str]) -> None:
        super().__init__(message)
        self.kinds = kinds


def run_shards(
    pipeline: Pipeline,
    shards: list[Shard],
    out: Path,
    schedule: Schedule,
    session: RaySession,
    done: int = 0,
    on_receipt: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run `shards` on the session's Ray; raise `ShardsFailed` naming every shard that failed.

    On Ctrl-C the shards in flight are cancelled (the caller then leaves the session).
    """
    session.connect()
    needed = pipeline.resources()
    task = ray.remote(run_shard).options(
        num_cpus=needed.cpus,
        num_gpus=needed.gpus,
        memory=None if needed.memory_gb is None else int(needed.memory_gb * 2**30),
        max_retries=schedule.retries,
        retry_exceptions=False,
    )
    cpus = int(ray.cluster_resources().get("CPU", 1))
    max_in_flight = schedule.max_in_flight or max(2, 2 * cpus)
    pipeline_ref = ray.put(pipeline)
    pending: deque[Shard] = deque(shards)
    in_flight: dict[ray.ObjectRef, tuple[Shard, float]] = {}
    failures: list[str] = []
    kinds: Counter[str] = Counter()
    bar = tqdm(
        total=len(shards) + done,
        initial=done,
        unit="shard",
        disable=not schedule.progress,
        desc=schedule.label,
    )
    try:
        with ctrl_c_noted() as interrupted:
            while pending or in_flight:
                while pending and len(in_flight) < max_in_flight:
                    shard = pending.popleft()
                    ref = task.remote(pipeline_ref, shard, out)
                    in_flight[ref] = (shard, time.monotonic())
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
                if interrupted.is_set():
                    raise KeyboardInterrupt
                for ref in ready:
                    shard, _ = in_flight.pop(ref)
                    try:
                        receipt = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        failures.append(f"{shard.name}: {_reason(error)}")
                        kinds[_kind(error)] += 1
                        continue
                    if on_receipt is not None:
                        on_receipt(receipt)
                    bar.update(1)
                    bar.set_postfix(rows=receipt["rows"], shard_s=f"{receipt['seconds']:.1f}")
                overdue = _cancel_overdue(in_flight, schedule.timeout)
                failures += overdue
                kinds["timeout"] += len(overdue)
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    if failures:
        raise ShardsFailed(
            f"{len(failures)} shard(s) failed; finished shards are kept and a rerun resumes:\n"
            + "\n".join(failures),
            +kinds,
        )


@contextmanager
def ctrl_c_noted() -> Iterator[threading.Event]:
    """An event that a Ctrl-C during the block sets, besides raising KeyboardInterrupt as
    Python's own handler does; a handler someone else installed is left as it is."""
    noted = threading.Event()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield noted
        return

    def note(signum: int, frame: Any) -> None:
        noted.set()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _cancel_overdue(
    in_flight: dict[ray.ObjectRef, tuple[Shard, float]], timeout: float | None
) -> list[str]:
    """Cancel the shards running past `timeout`; a failure line for each."""
    if timeout is None:
        return []
    now = time.monotonic()
    overdue = [ref for ref, (_, started) in in_flight.items() if now - started > timeout]
    failures = []
    for ref in overdue:
        shard, _ = in_flight.pop(ref)
        ray.cancel(ref, force=True)
        failures.append(f"{shard.name}: ran past the {timeout:g} s shard timeout and was stopped")
    return failures


def _kind(error: ray.exceptions.RayError) -> str:
    """The pipeline's exception type when it raised one, else Ray's failure type."""
    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        return type(error.cause).__name__
    return type(error).__name__


def _reason(error: ray.exceptions.RayError) -> str:
    """What went wrong in a shard, in one paragraph: the pipeline's own exception when it raised
    one (not Ray's wrapper and traceback), else Ray's failure after its retries."""
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause
        return f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
    return f"{type(error).__name__} (after Ray's retries): {error}"
