"""RayBackend: song workers as actors on a Ray cluster, for the same station code.

    backend = RayBackend(WorkerConfig.from_settings(settings), RayOptions.from_settings(settings),
                         tracks_dir=settings.tracks_dir, adapters_dir=settings.adapters_dir)
    await backend.start()                 # joins the cluster, waits for a first worker
    await backend.wait_for_slot()
    handle = backend.submit(SongJob(job_id="job-1", theme="rain"), on_progress=print)
    done = await handle                   # JobDone, its track now in tracks_dir

It presents the interface of `engine.worker_client.WorkerClient`
(`engine.song_backend.SongBackend`), so the stations cannot tell the two apart.

- Workers: `RayOptions.workers` actors (`engine.ray_actor.SongActor`), each
  asking Ray for `gpus_per_worker` of a GPU and `cpus_per_worker` CPUs, each
  holding its models, each taking `max_in_flight` jobs (it writes one song
  while it sings another). `free_slots` adds up the workers that are ready.
- Scheduling: each job goes to the ready worker with the shortest queue (the
  fewest jobs in flight; the bot is the only one that sends them work).
- Progress streams back while the song is made (a streaming generator); the
  audio comes through the object store and is written into `tracks_dir` here.
- Adapters travel by content hash (`engine.ray_adapters`).
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

from engine.adapters import AdapterError
from engine.jobs import JobDone, JobFailure, JobProgress, JobWritten, SongJob, read_from_worker
from engine.ray_adapters import AdapterShelf
from engine.ray_cluster import ClusterUnreachableError, connect, disconnect
from engine.ray_workers import RayOptions, SongWorker, SongWorkerPool, is_loss
from engine.worker import WorkerConfig
from engine.worker_client import (
    JobFailedError,
    JobHandle,
    WorkerBusyError,
    WorkerClosedError,
    WorkerError,
    WorkerEvent,
    WorkerStartError,
)

log = logging.getLogger("engine.ray_backend")

#: A track file name as the engine writes it (engine.pipeline.track_file_name).
_TRACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class RayBackend:
    """Song workers on a Ray cluster. See the module docstring."""

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
        if not 1 <= max_in_flight <= 8:
            raise ValueError(f"max_in_flight={max_in_flight}: allowed is 1 to 8")
        self.config = config
        self.options = options
        self.tracks_dir = Path(tracks_dir)
        self.adapters = AdapterShelf(adapters_dir)
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.start_timeout = start_timeout
        self.on_event = on_event
        self._state = "new"
        self._joined = False
        self._handles: dict[str, JobHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._busy_reason: str | None = None
        self._unavailable_reason: str | None = None
        self._changed = asyncio.Event()
        self.pool = SongWorkerPool(
            config, options, emit=self._emit, changed=self._notify,
            wait_changed=self.wait_changed, spawn=self._spawn,
        )  # fmt: skip

    # --- public state (as WorkerClient) ----------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def busy_reason(self) -> str | None:
        return self._busy_reason

    @property
    def unavailable_reason(self) -> str | None:
        return self._unavailable_reason

    @property
    def in_flight(self) -> list[JobHandle]:
        return list(self._handles.values())

    @property
    def workers(self) -> list[dict[str, Any]]:
        """Each worker's index, readiness, jobs in flight and where it runs."""
        return [{"index": w.index, "ready": w.ready, "jobs": len(w.jobs), "made": w.made, **w.info}
                for w in self.pool.workers]  # fmt: skip

    @property
    def free_slots(self) -> int:
        if self._state != "ready" or self._busy_reason is not None:
            return 0
        workers = self.pool.workers
        return sum(max(0, self.max_in_flight - len(w.jobs)) for w in workers if w.ready)

    # --- life cycle -----------------------------------------------------------
    async def start(self) -> None:
        """Join the cluster and wait until a first worker is ready (`WorkerStartError`)."""
        if self._state != "new":
            raise WorkerError(f"start() was already called (the backend is {self._state})")
        try:
            self._joined = await asyncio.to_thread(
                connect, self.options.address, **self.options.init_options
            )
            await self._launch()
        except (WorkerStartError, ClusterUnreachableError) as exc:
            self._make_unavailable(str(exc))
            raise WorkerStartError(str(exc)) from None

    async def close(self) -> None:
        """Remove the workers and fail what is still in flight with `WorkerClosedError`."""
        if self._state == "closed":
            return
        self._state = "closed"
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for handle in list(self._handles.values()):
            self._finish(handle, WorkerClosedError(f"job {handle.job_id}: the backend was closed"))
        await asyncio.to_thread(self.pool.remove)
        await asyncio.to_thread(disconnect, self._joined)
        self._notify()

    async def pause(self, reason: str, *, release_gpu: bool = True) -> None:
        """Hand out no more work; return once the jobs in flight ended (see the docstring)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("pause(reason): give a short reason to show listeners")
        self._check_open()
        self._busy_reason = reason.strip()
        self._emit(WorkerEvent("paused", f"generation paused: {self._busy_reason}"))
        self._notify()
        pending = [handle.future for handle in self._handles.values()]
        if pending:
            await asyncio.wait(pending)
        if release_gpu and self._busy_reason is not None and self._state == "ready":
            await asyncio.to_thread(self.pool.remove)
            self._state = "released"

    async def resume(self) -> None:
        self._check_open()
        self._busy_reason = None
        if self._state in ("released", "unavailable"):
            self._unavailable_reason = None
            try:
                await self._launch()
            except WorkerStartError as exc:
                self._make_unavailable(str(exc))
                raise
        self._emit(WorkerEvent("resumed", "generation resumed"))
        self._notify()

    # --- jobs -----------------------------------------------------------------
    async def wait_for_slot(self) -> None:
        while self.free_slots <= 0:
            self._check_open()
            await self.wait_changed()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def submit(
        self,
        job: SongJob,
        *,
        on_progress: Callable[[JobProgress], None] | None = None,
        on_written: Callable[[JobWritten], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> JobHandle:
        """Send `job` to the ready worker with the shortest queue (as `WorkerClient.submit`)."""
        self._check_open()
        if not isinstance(job, SongJob):
            raise TypeError(f"submit() takes an engine.jobs.SongJob, not {type(job).__name__}")
        if job.job_id in self._handles:
            raise ValueError(f"job id {job.job_id!r} is already in flight: ids must be unique")
        if self._state == "unavailable":
            raise WorkerError(f"cannot take job {job.job_id}: {self._unavailable_reason}")
        if self._busy_reason is None and self.free_slots <= 0:
            raise WorkerBusyError(f"cannot take job {job.job_id} now: every worker is full")
        loop = asyncio.get_running_loop()
        handle = JobHandle(job, loop.create_future(), on_progress, on_written, on_retry)
        self._handles[job.job_id] = handle
        worker = self.pool.shortest_queue()
        if worker is not None:
            worker.jobs.add(job.job_id)
        self._spawn(self._run(handle, worker))
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
                        self._finish(handle, JobFailedError(
                            handle.job_id, "worker_died", f"{label}, {handle.deaths} time(s) "
                            "while making this job", handle.deaths, label))  # fmt: skip
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
        stream = worker.actor.make.options(num_returns="streaming").remote(
            job.model_dump_json(), adapter
        )
        async for ref in stream:
            message = read_from_worker(await ref)
            if isinstance(message, JobProgress):
                handle.started = True
                handle.progress = message
                if handle.on_progress is not None:
                    handle.on_progress(message)
            elif isinstance(message, JobWritten):
                handle.written = message
                if handle.on_written is not None:
                    handle.on_written(message)
            elif isinstance(message, JobFailure):
                return JobFailedError(job.job_id, message.reason, message.message, handle.attempt)
            elif isinstance(message, JobDone):
                audio = await (await stream.__anext__())
                track = await asyncio.to_thread(self._store_track, message.track, audio)
                return message.model_copy(update={"track": track})
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

    def _finish(self, handle: JobHandle, outcome: JobDone | BaseException) -> None:
        self._handles.pop(handle.job_id, None)
        if not handle.future.done():
            if isinstance(outcome, BaseException):
                handle.future.set_exception(outcome)
            else:
                handle.future.set_result(outcome)
        self._notify()

    async def _launch(self) -> None:
        self._state = "starting"
        await self.pool.launch(self.start_timeout)
        self._state = "ready"
        self._notify()

    def _make_unavailable(self, reason: str) -> None:
        self._state = "unavailable"
        self._unavailable_reason = reason
        for handle in list(self._handles.values()):
            self._finish(handle, JobFailedError(handle.job_id, "worker_start_failed", reason,
                                                handle.attempt))  # fmt: skip
        self._emit(WorkerEvent("unavailable", f"the song workers cannot be started: {reason}"))
        self._notify()

    # --- internals: helpers ---------------------------------------------------
    def _check_open(self) -> None:
        if self._state == "closed":
            raise WorkerClosedError("the Ray backend is closed")
        if self._state == "new":
            raise WorkerError("call start() first")

    def _emit(self, event: WorkerEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("worker event handler failed")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
