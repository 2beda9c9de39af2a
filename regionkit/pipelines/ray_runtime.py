"""One Ray code path: the same call attaches to a cluster or starts an embedded local one."""

from __future__ import annotations

import logging
import os

import ray


def ensure_ray(address: str | None = None) -> None:
    """Connect to Ray once per process.

    `address=None` follows Ray's own rule: `RAY_ADDRESS` if set, else a running local cluster,
    else a new embedded one on this machine. A given address (`ray://...` or `host:port`)
    attaches to that cluster; regionkit must be installed on its nodes.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
