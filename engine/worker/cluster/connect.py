"""Joining the Ray cluster named by `RAY_ADDRESS`, or saying in one line why not.

- `auto`: the cluster this machine joined with `ray start` (its address file);
- `local`: a cluster started inside this process, for trying Ray out;
- `host:port` (the head's GCS port, 6379 by default) or `ray://host:port`
  (Ray Client, port 10001): a cluster elsewhere.

Ray waits a long time for an address that does not answer, so an explicit
address is first tried with a plain TCP connection (a few seconds); a cluster
that is not there ends in `ClusterUnreachableError`, whose message says what
was tried and how to fix it. A process that has already joined a cluster (a
test, a benchmark) keeps it: `connect` then does nothing and `disconnect`
leaves it alone.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from engine.errors import WorkerError
from engine.settings import PROJECT_ROOT

log = logging.getLogger("engine.worker.cluster.connect")

#: Seconds a TCP connection to an explicit address may take before it counts as unreachable.
PROBE_TIMEOUT = 5.0

FIX = (
    "start one with `ray start --head` on this machine, set RAY_ADDRESS to the head "
    "(host:6379 or ray://host:10001), use RAY_ADDRESS=local to run one inside the bot, "
    "or WORKER_BACKEND=local (see docs/scaling.md)"
)


class ClusterUnreachableError(WorkerError):
    """No Ray cluster answers at the configured address; the message says how to fix it."""


def connect(address: str, **init_options: Any) -> bool:
    """Join the cluster at `address` (see the module docstring).

    Returns True when this call joined (so `disconnect(True)` leaves again),
    False when the process was in a cluster already.
    """
    import ray

    if ray.is_initialized():
        return False
    if address not in ("auto", "local"):
        _probe(address)
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        # Workers started by this driver import the radio's own code.
        "runtime_env": {"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}},
        **init_options,
    }
    if address != "local":
        options.pop("include_dashboard")  # only a cluster this process starts has one to set
    try:
        ray.init(address=address, **options)
    except ConnectionError as exc:
        why = "none was started on this machine" if address == "auto" else first_line(exc)
        raise ClusterUnreachableError(f"no Ray cluster answers at RAY_ADDRESS={address} ({why}): {FIX}") from None
    log.info("joined the Ray cluster at %s: %s", address, _resources(ray.cluster_resources()))
    return True


def disconnect(joined: bool) -> None:
    """Leave the cluster if `connect` joined it (a `local` cluster stops with us)."""
    if joined:
        import ray

        ray.shutdown()


def _probe(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT).close()
    except (OSError, ValueError) as exc:
        raise ClusterUnreachableError(f"no Ray cluster answers at RAY_ADDRESS={address} ({exc}): {FIX}") from None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (Ray's run to many lines), at most 300 characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300].rstrip(".")


def _resources(resources: dict[str, float]) -> str:
    return ", ".join(f"{resources.get(k, 0):g} {k}" for k in ("GPU", "CPU"))
