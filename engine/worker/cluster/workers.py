"""The song workers of a Ray cluster: created, watched through restarts, removed.

`SongWorkerPool` creates `RayOptions.workers` actors (`engine.worker.cluster.actor.
SongActor`), each asking Ray for `gpus_per_worker` of a GPU and
`cpus_per_worker` CPUs, and watches each one until its models are loaded.
Ray restarts a lost actor (`max_restarts`, endless by default); the pool marks
it not ready, logs what happened, and waits for it to answer again. The
backend (`engine.worker.cluster.backend`) sends jobs only to ready workers, to the one
with the shortest queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.settings import Settings
from engine.worker.backend_base import WorkerStartError
from engine.worker.cluster.connect import first_line
from engine.worker.process import WorkerConfig

log = logging.getLogger("engine.worker.cluster.workers")


@dataclass(frozen=True)
class RayOptions:
    """Where the cluster is and what each song worker asks of it.

    `init_options` go to `ray.init` when this process starts the cluster
    (`address="local"`): tests and benchmarks set `num_cpus`, `num_gpus`.
    """

    address: str = "auto"
    workers: int = 1
    gpus_per_worker: float = 1.0
    cpus_per_worker: float = 1.0
    max_restarts: int = -1
    init_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> RayOptions:
        values: dict[str, Any] = {
            "address": settings.ray_address,
            "workers": settings.ray_workers,
            "gpus_per_worker": settings.ray_gpus_per_worker,
            "cpus_per_worker": settings.ray_cpus_per_worker,
        }
        return cls(**{**values, **changes})


@dataclass(eq=False)
class SongWorker:
    """One actor and the bot's view of it: its jobs in flight, ready or not."""

    index: int
    actor: Any
    jobs: set[str] = field(default_factory=set)
    ready: bool = False
    made: int = 0  # songs finished
    failed: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # pid, node, device, load_seconds

    @property
    def name(self) -> str:
        return f"Ray worker {self.index}"


class SongWorkerPool:
    """See the module docstring. `event(kind, message, pid, job_ids)` reports what
    happened (a `WorkerEvent`), `changed` wakes the backend's waiters, `wait_changed`
    waits for the next change, `spawn` runs a background task."""

    def __init__(
        self,
        config: WorkerConfig,
        options: RayOptions,
        *,
        event: Callable[..., None],
        changed: Callable[[], None],
        wait_changed: Callable[[], Awaitable[None]],
        spawn: Callable[[Any], None],
    ):
        self.config = config
        self.options = options
        self.workers: list[SongWorker] = []
        self.losses = 0  # workers lost since the start
        self._event = event
        self._changed = changed
        self._wait_changed = wait_changed
        self._spawn = spawn

    def shortest_queue(self, avoid: SongWorker | None = None) -> SongWorker | None:
        """The ready worker with the fewest jobs in flight (another than `avoid` if any)."""
        ready = [w for w in self.workers if w.ready and w is not avoid]
        ready = ready or [w for w in self.workers if w.ready]
        return min(ready, key=lambda w: (len(w.jobs), w.index), default=None)

    async def launch(self, timeout: float) -> None:
        """Create the actors; return once one is ready. `WorkerStartError` when all
        failed to start, or none was placed and ready within `timeout` seconds."""
        from engine.worker.cluster.actor import (
            SongActor,  # the workers load this module, not the bot
        )

        await asyncio.to_thread(self.remove)  # those of an earlier start, if any
        opts = self.options
        actor_class = ray.remote(SongActor).options(
            num_gpus=opts.gpus_per_worker,
            num_cpus=opts.cpus_per_worker,
            max_restarts=opts.max_restarts,
            max_task_retries=0,
        )
        config_json = self.config.model_dump_json()
        self.workers = [SongWorker(i, actor_class.remote(config_json, i)) for i in range(1, opts.workers + 1)]
        for worker in self.workers:
            self._spawn(self._await_ready(worker))
        deadline = time.monotonic() + timeout
        while not any(w.ready for w in self.workers):
            if all(w.failed for w in self.workers):
                failed = self.workers[0].failed
                await asyncio.to_thread(self.remove)
                raise WorkerStartError(f"the song workers could not start: {failed}")
            try:
                await asyncio.wait_for(self._wait_changed(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                resources = await asyncio.to_thread(ray.cluster_resources)
                await asyncio.to_thread(self.remove)
                raise WorkerStartError(
                    f"no song worker was placed within {timeout:g} s: the cluster has "
                    f"{resources.get('GPU', 0):g} GPU(s) and {resources.get('CPU', 0):g} "
                    f"CPU(s); each worker asks for {opts.gpus_per_worker:g} GPU "
                    f"(RAY_GPUS_PER_WORKER) and {opts.cpus_per_worker:g} CPU (RAY_CPUS_PER_WORKER)"
                ) from None

    def lose(self, worker: SongWorker, exc: BaseException) -> str:
        """`worker` was lost under a job: say so once and wait for Ray's restart.

        Returns what happened in a few words, for statistics (`Ray worker 2 lost`)."""
        label = f"{worker.name} {loss_kind(exc)}"
        if worker.ready:
            worker.ready = False
            self.losses += 1
            jobs = tuple(sorted(worker.jobs))
            log.error(
                "%s (pid %s) was lost: %s; Ray restarts it; its %d job(s) go to other workers",
                worker.name,
                worker.info.get("pid"),
                first_line(exc),
                len(jobs),
            )
            self._event("died", f"{label}: Ray restarts it", worker.info.get("pid"), jobs)
            self._spawn(self._await_ready(worker))
            self._changed()
        return label

    def remove(self) -> None:
        """Kill every actor for good (no restart): their GPUs are free. Blocking."""
        for worker in self.workers:
            worker.ready = False
            ray.kill(worker.actor, no_restart=True)
        self.workers = []

    async def _await_ready(self, worker: SongWorker) -> None:
        """Wait for `worker`'s models (also after Ray restarted it)."""
        while True:
            try:
                worker.info = await worker.actor.ready.remote()
                break
            except ray.exceptions.ActorUnavailableError:
                await asyncio.sleep(0.5)  # restarting: ask again
            except ray.exceptions.RayActorError as exc:
                worker.failed = creation_error(exc)
                log.error("%s cannot start: %s", worker.name, worker.failed)
                self._event("died", f"{worker.name} cannot start: {worker.failed}")
                self._changed()
                return
        worker.ready = True
        info = worker.info
        message = (
            f"{worker.name} ready on {info['node']} ({info['device']}, pid "
            f"{info['pid']}, models loaded in {info['load_seconds']:.1f} s)"
        )
        self._event("ready", message, info["pid"])
        self._changed()


def is_loss(exc: BaseException) -> bool:
    """A worker lost under a job (as opposed to a bug): Ray's actor and memory errors."""
    return isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.OutOfMemoryError)


def loss_kind(exc: BaseException) -> str:
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "out of memory"
    text = str(exc).lower()
    if "node" in text and "died" in text:
        return "lost with its machine"
    return "lost"


def creation_error(exc: BaseException) -> str:
    """Why an actor could not be created: the error its `__init__` raised, if any."""
    for line in str(exc).splitlines():
        if "Error:" in line and "ray." not in line:
            return line.strip()[:300]
    return first_line(exc)
