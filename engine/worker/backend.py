"""Where songs are made: the one interface the stations use, and the factory.

Two backends serve the same station code (`bot.station.manager.StationManager`):

- `engine.worker.client.WorkerClient`: one worker process on this machine
  (`WORKER_BACKEND=local`, the default; nothing else to run);
- `engine.worker.cluster.backend.RayBackend`: song workers as actors on a Ray cluster
  (`WORKER_BACKEND=ray`; docs/scaling.md).

Both take `engine.worker.protocol.SongJob`s and give back `JobHandle`s that end in a
`JobDone` whose track file is in this machine's `TRACKS_DIR`, or raise
`JobFailedError`. `backend_from_settings` imports Ray only for `ray`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.settings import Settings
from engine.worker.backend_base import JobHandle, WorkerEvent
from engine.worker.client import WorkerClient
from engine.worker.process import WorkerConfig
from engine.worker.protocol import JobProgress, JobWritten, SongJob


class SongBackend(Protocol):
    """What the stations need of whatever makes the songs (see the module docstring)."""

    on_event: Callable[[WorkerEvent], None] | None

    @property
    def state(self) -> str: ...

    @property
    def busy_reason(self) -> str | None:
        """Why no work is handed out (paused, e.g. for training), or None."""
        ...

    @property
    def unavailable_reason(self) -> str | None:
        """Why songs cannot be made at all (the workers cannot start), or None."""
        ...

    @property
    def in_flight(self) -> list[JobHandle]: ...

    @property
    def free_slots(self) -> int:
        """How many units of work (a job, or one batch) `submit` takes now."""
        ...

    @property
    def batch_size(self) -> int:
        """The most jobs `submit_batch` takes as one generation (1: no batches)."""
        ...

    def summary(self) -> str:
        """The workers in a few words, for `/radio_stats`."""
        ...

    async def start(self) -> Any:
        """Start the workers; raises `WorkerStartError` when none can start."""
        ...

    async def close(self) -> None: ...

    async def pause(self, reason: str, *, release_gpu: bool = True) -> None: ...

    async def resume(self) -> None: ...

    async def wait_for_slot(self) -> None: ...

    async def wait_changed(self) -> None: ...

    def submit(
        self,
        job: SongJob,
        *,
        on_progress: Callable[[JobProgress], None] | None = None,
        on_written: Callable[[JobWritten], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> JobHandle: ...

    def submit_batch(self, jobs: list[SongJob], callbacks: list[dict[str, Callable[..., None]]]) -> list[JobHandle]:
        """Jobs made together in one generation, 2 to `batch_size` of them."""
        ...


def backend_from_settings(settings: Settings, config: WorkerConfig | None = None) -> SongBackend:
    """The backend `WORKER_BACKEND` names, configured from `.env`."""
    config = config or WorkerConfig.from_settings(settings)
    if settings.worker_backend == "ray":
        from engine.worker.cluster.backend import RayBackend, RayOptions

        return RayBackend(
            config,
            RayOptions.from_settings(settings),
            tracks_dir=settings.tracks_dir,
            adapters_dir=settings.adapters_dir,
            max_in_flight=settings.worker_max_in_flight,
        )
    return WorkerClient(
        config,
        max_in_flight=settings.worker_max_in_flight,
        stall_timeout=settings.worker_stall_timeout,
    )
