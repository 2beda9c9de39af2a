"""One Ray code path: the same call attaches to a cluster or starts an embedded local one."""

from __future__ import annotations

import logging
import os

import ray

TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


class _QuietTokenNotice(logging.Filter):
    """Drops Ray's notice that a new local cluster has token authentication, its safe default,
    which it prints on every build; its warning that authentication is *off* still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_NOTICE)


QUIET_TOKEN_NOTICE = _QuietTokenNotice()


def ensure_ray(address: str | None = None) -> bool:
    """Connect to Ray once per process; True when this call connected (False when the process
    already was, e.g. a notebook that called `ray.init` itself).

    `address=None` follows Ray's own rule: `RAY_ADDRESS` if set, else a running local cluster,
    else a new embedded one on this machine. A given address (`ray://...` or `host:port`)
    attaches to that cluster; regionkit must be installed on its nodes.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.getLogger(TOKEN_NOTICE_LOGGER).addFilter(QUIET_TOKEN_NOTICE)
    ray.init(
        address=address,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
    return True


class RaySession:
    """A build's link to Ray, made when first needed (planning tasks or shards), so a build
    with nothing to run starts no cluster; it remembers whether it made the link itself.

    Args:
        address: as for `ensure_ray`.
    """

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.connected_here = False

    def connect(self) -> None:
        """Connect if this process is not connected yet."""
        self.connected_here |= ensure_ray(self.address)

    def leave(self) -> None:
        """Leave Ray at once if this session connected (an embedded cluster shuts down with
        it); a Ray the process brought itself, as a notebook does, is left running."""
        if self.connected_here:
            ray.shutdown()
            self.connected_here = False
