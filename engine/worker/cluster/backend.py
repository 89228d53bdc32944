"""RayBackend: song workers as actors on a Ray cluster, for the same station code.

    backend = RayBackend(WorkerConfig.from_settings(settings), RayOptions.from_settings(settings),
                         tracks_dir=settings.tracks_dir, adapters_dir=settings.adapters_dir)
    await backend.start()                 # joins the cluster, waits for a first worker
    await backend.wait_for_slot()
    handle = backend.submit(SongJob(job_id="job-1", theme="rain"), on_progress=print)
    done = await handle                   # JobDone, its track now in tracks_dir

It presents the interface of `engine.worker.client.WorkerClient`
(`engine.worker.backend.SongBackend`), so the stations cannot tell the two apart.

- Workers: `RayOptions.workers` actors (`engine.worker.cluster.actor.SongActor`), each
  asking Ray for `gpus_per_worker` of a GPU and `cpus_per_worker` CPUs, each
  holding its models, each taking `max_in_flight` jobs (it writes one song
  while it sings another). `free_slots` adds up the workers that are ready.
- Scheduling: each job goes to the ready worker with the shortest queue (the
  fewest jobs in flight; the bot is the only one that sends them work).
- Progress streams back while the song is made (a streaming generator); the
  audio comes through the object store and is written into `tracks_dir` here.
- Adapters travel by content hash (`engine.worker.cluster.adapters`).
- A lost worker (killed, out of memory, its machine gone) is restarted by Ray
  (`max_restarts`); a job it had started goes to another worker, once: a
  second loss fails it with `worker_died`. Its `on_retry` callback gets a
  label such as `worker_died (Ray worker lost)`, which the station counts in
  `/radio_stats`, and a `died` event tells the logs which worker and why.
- `pause(reason)` hands out no more work and lets the jobs in flight end; with
  `release_gpu` the actors are removed so their GPUs are free, and `resume()`
  creates them again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.adapters.manager import AdapterError
from engine.worker.backend_base import (
    JobFailedError,
    JobHandle,
    SongBackendBase,
    WorkerError,
    WorkerEvent,
    WorkerStartError,
)
from engine.worker.cluster.adapters import AdapterShelf
from engine.worker.cluster.connect import ClusterUnreachableError, connect, disconnect
from engine.worker.cluster.workers import RayOptions, SongWorker, SongWorkerPool, is_loss
from engine.worker.process import WorkerConfig
from engine.worker.protocol import JobDone, JobProgress, JobWritten, SongJob, read_from_worker

log = logging.getLogger("engine.worker.cluster.backend")

#: A track file name as the engine writes it (engine.track_output.track_file_name).
_TRACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class RayBackend(SongBackendBase):
    """Song workers on a Ray cluster. See the module docstring."""

    what = "the Ray backend"

    def __init__(
        self,
        config: WorkerConfig,
        options: RayOptions,
        *,
        tracks_dir: Path,
        adapters_dir: Path,
        max_in_flight: int = 2,
        max_attempts: int = 2,
        start_timeout: float = 600.0,
        on_event: Callable[[WorkerEvent], None] | None = None,
    ):
        super().__init__(max_in_flight=max_in_flight, max_attempts=max_attempts, on_event=on_event)
        self.config = config
        self.options = options
        self.tracks_dir = Path(tracks_dir)
        self.adapters = AdapterShelf(adapters_dir)
        self.start_timeout = start_timeout
        self._joined = False
        self.pool = SongWorkerPool(
            config,
            options,
            event=self._event,
            changed=self._notify,
            wait_changed=self.wait_changed,
            spawn=self._spawn_task,
        )

    # --- public state (as WorkerClient) ----------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def workers(self) -> list[dict[str, Any]]:
        """Each worker's index, readiness, jobs in flight and where it runs."""
        return [
            {"index": w.index, "ready": w.ready, "jobs": len(w.jobs), "made": w.made, **w.info}
            for w in self.pool.workers
        ]

    @property
    def free_slots(self) -> int:
        if self._state != "ready" or self._busy_reason is not None:
            return 0
        workers = self.pool.workers
        return sum(max(0, self.max_in_flight - len(w.jobs)) for w in workers if w.ready)

    def summary(self) -> str:
        workers = self.pool.workers
        ready = sum(1 for w in workers if w.ready)
        text = f"{ready} of {len(workers)} Ray workers ready"
        if self.pool.losses:
            text += f"; {self.pool.losses} lost since the start and restarted by Ray"
        return text

    # --- life cycle -----------------------------------------------------------
    async def start(self) -> None:
        """Join the cluster and wait until a first worker is ready (`WorkerStartError`)."""
        if self._state != "new":
            raise WorkerError(f"start() was already called (the backend is {self._state})")
        try:
            self._joined = await asyncio.to_thread(connect, self.options.address, **self.options.init_options)
            await self._launch()
        except (WorkerStartError, ClusterUnreachableError) as exc:
            self._make_unavailable(str(exc))
            raise WorkerStartError(str(exc)) from None

    async def _shut_down(self) -> None:
        await asyncio.to_thread(self.pool.remove)
        await asyncio.to_thread(disconnect, self._joined)

    def submit(
        self,
        job: SongJob,
        *,
        on_progress: Callable[[JobProgress], None] | None = None,
        on_written: Callable[[JobWritten], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> JobHandle:
        """Send `job` to the ready worker with the shortest queue (as `WorkerClient.submit`)."""
        full = self._busy_reason is None and self.free_slots <= 0  # paused: held for resume()
        (handle,) = self._admit([job], [(on_progress, on_written, on_retry)], full=full)
        worker = self.pool.shortest_queue()
        if worker is not None:
            worker.jobs.add(job.job_id)
        self._spawn_task(self._run(handle, worker))
        self._notify()
        return handle

    # --- internals: jobs ------------------------------------------------------
    async def _run(self, handle: JobHandle, worker: SongWorker | None) -> None:
        """Make the job on `worker`, on another one when it is lost (once)."""
        lost: SongWorker | None = None
        while True:
            while worker is None:  # every worker is starting or restarting
                changed = self._changed
                worker = self.pool.shortest_queue(avoid=lost)
                if worker is None:
                    await changed.wait()
                else:
                    worker.jobs.add(handle.job_id)
            try:
                outcome = await self._make(worker, handle)
            except Exception as exc:
                if not is_loss(exc):
                    log.exception("job %s: unexpected error on %s", handle.job_id, worker.name)
                    message = f"{type(exc).__name__}: {exc}"
                    outcome = JobFailedError(handle.job_id, "engine_error", message, handle.attempt)
                else:
                    label = self.pool.lose(worker, exc)
                    worker.jobs.discard(handle.job_id)
                    if handle.started:
                        handle.deaths += 1
                    if handle.deaths >= self.max_attempts:
                        self._finish(
                            handle,
                            JobFailedError(
                                handle.job_id,
                                "worker_died",
                                f"{label}, {handle.deaths} time(s) while making this job",
                                handle.deaths,
                                label,
                            ),
                        )
                        return
                    if handle.started and handle.on_retry is not None:
                        handle.on_retry(f"worker_died ({label})")
                    handle.started = False
                    lost, worker = worker, None
                    continue
            worker.jobs.discard(handle.job_id)
            worker.made += isinstance(outcome, JobDone)
            self._finish(handle, outcome)
            return

    async def _make(self, worker: SongWorker, handle: JobHandle) -> JobDone | JobFailedError:
        """One attempt on `worker`: stream its messages, then store the audio here."""
        job = handle.job_to_send()
        adapter = None
        if job.adapter is not None:
            try:
                adapter = await self.adapters.reference(job.adapter)
            except AdapterError as exc:
                return JobFailedError(job.job_id, "adapter_error", str(exc), handle.attempt)
        stream = worker.actor.make.options(num_returns="streaming").remote(job.model_dump_json(), adapter)
        async for ref in stream:
            outcome = self._follow(handle, read_from_worker(await ref))
            if isinstance(outcome, JobDone):
                audio = await (await stream.__anext__())
                track = await asyncio.to_thread(self._store_track, outcome.track, audio)
                return outcome.model_copy(update={"track": track})
            if outcome is not None:
                return outcome
        ended = f"{worker.name} ended the job without a result"
        return JobFailedError(job.job_id, "engine_error", ended, handle.attempt)

    def _store_track(self, track: Any, audio: bytes) -> Any:
        """Write the audio that came through the object store into `tracks_dir`."""
        name = Path(track.path).name
        if not _TRACK_NAME.match(name):
            raise ValueError(f"a song worker named its track {name!r}: not a safe file name")
        self.tracks_dir.mkdir(parents=True, exist_ok=True)
        target = self.tracks_dir / name
        partial = target.with_name(f".{name}.partial")
        partial.write_bytes(audio)
        partial.replace(target)
        return track.model_copy(update={"path": str(target)})

    async def _launch(self) -> None:
        self._state = "starting"
        await self.pool.launch(self.start_timeout)
        self._state = "ready"
        self._notify()

    async def _release(self) -> None:
        await asyncio.to_thread(self.pool.remove)
