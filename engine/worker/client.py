"""WorkerClient: the asyncio side of the GPU worker process (`engine.worker.process`).

    client = WorkerClient(WorkerConfig.from_settings(settings))
    await client.start()                      # spawns the worker, waits until it is ready
    await client.wait_for_slot()
    handle = client.submit(SongJob(job_id="job-1", theme="rain"), on_progress=print)
    done = await handle                       # JobDone, or raises JobFailedError

Nothing here blocks the event loop: the process is started and joined in
threads, and one reader thread per worker waits on both the pipe and the
process sentinel, handing every message to the loop with
`call_soon_threadsafe`. A death (OOM kill, segfault, `kill -9`) is therefore
noticed as soon as the process exits.

Slots: at most `max_in_flight` units of work are in flight, a unit being one
job (`submit`) or the jobs of one generation (`submit_batch`, up to
`batch_size` songs made together); more are refused (`WorkerBusyError`), so a
scheduler waits for `wait_for_slot()` and picks the jobs to send only when the
worker can take them.

Deaths and retries: when the worker dies, a new one is started and every job
in flight is sent to it again (with the spec already written, so the
songwriter is skipped). Jobs the dead worker had *started* (it sent progress
for them) count the death; a job that was started by `max_attempts` workers
that died fails with reason `worker_died` and a message naming the exit code
or signal. A worker silent for `stall_timeout` seconds while it has work is
killed and counts the same way (`worker_stalled`). When two starts in a row
fail, the client is *unavailable* until `resume()`; its jobs fail with
`worker_start_failed`.

Busy switch: `pause(reason)` stops handing out slots, lets the jobs in flight
finish and (by default) stops the process so the GPU memory is free, e.g. for
training; `resume()` starts it again. `close()` stops the worker for good:
`stop`, then SIGTERM, then SIGKILL, and always reaps the process.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any, Literal

from engine.worker.backend_base import (
    JobFailedError,
    JobHandle,
    SongBackendBase,
    WorkerBusyError,
    WorkerClosedError,
    WorkerError,
    WorkerEvent,
    WorkerStartError,
)
from engine.worker.process import WorkerConfig, worker_main
from engine.worker.process_handle import WorkerProcess, describe_exit, join_or_kill, read_messages, spawn_worker
from engine.worker.protocol import (
    JobProgress,
    JobWritten,
    Message,
    SongJob,
    Stop,
    Submit,
    SubmitBatch,
    WorkerFatal,
    WorkerReady,
)

# The handles, events and errors live in engine.worker.backend_base (shared with the Ray backend).
__all__ = [
    "JobFailedError",
    "JobHandle",
    "WorkerBusyError",
    "WorkerClient",
    "WorkerClosedError",
    "WorkerError",
    "WorkerEvent",
    "WorkerStartError",
]

log = logging.getLogger("engine.worker.client")

ClientState = Literal["new", "starting", "ready", "stopping", "released", "unavailable", "closed"]
#: Start-ups in a row that may fail before the client gives up until `resume()`.
START_FAILURES_ALLOWED = 2


class WorkerClient(SongBackendBase):
    """Runs the worker process for an asyncio program. See the module docstring."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        max_in_flight: int = 2,
        max_attempts: int = 2,
        start_timeout: float = 600.0,
        stall_timeout: float = 600.0,
        stop_timeout: float = 10.0,
        on_event: Callable[[WorkerEvent], None] | None = None,
    ):
        super().__init__(max_in_flight=max_in_flight, max_attempts=max_attempts, on_event=on_event)
        for name, value in (
            ("start_timeout", start_timeout),
            ("stall_timeout", stall_timeout),
            ("stop_timeout", stop_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name}={value}: allowed is a number of seconds above 0")
        self.config = config
        self.start_timeout = start_timeout
        self.stall_timeout = stall_timeout
        self.stop_timeout = stop_timeout
        self.ready_info: WorkerReady | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: WorkerProcess | None = None
        self._generation = 0
        self._ready: asyncio.Future[WorkerReady] | None = None
        self._last_activity = time.monotonic()
        self._exited: dict[int, asyncio.Future[None]] = {}

    # --- public state ---------------------------------------------------------
    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def pid(self) -> int | None:
        return self._proc.process.pid if self._proc is not None else None

    @property
    def free_slots(self) -> int:
        """How many jobs `submit` takes now: 0 while paused, unavailable or closed."""
        if self._state not in ("starting", "ready") or self._busy_reason is not None:
            return 0
        return self.max_in_flight - self.units_in_flight

    @property
    def batch_size(self) -> int:
        """The most jobs one `submit_batch` may carry: `BATCH_SIZE` as the worker's GPU
        tier allows it (1 until the worker is ready)."""
        return self.ready_info.batch_size if self.ready_info is not None else 1

    def summary(self) -> str:
        return f"one worker process on this machine ({self._state})"

    # --- life cycle -----------------------------------------------------------
    async def start(self) -> WorkerReady:
        """Start the worker and wait until its models are loaded.

        Raises `WorkerStartError` (with the worker's own message, e.g. a missing
        checkpoint) when it cannot start; the client can then only be closed.
        """
        if self._state != "new":
            raise WorkerError(f"start() was already called (the client is {self._state})")
        self._loop = asyncio.get_running_loop()
        self._spawn_task(self._watch_stalls())
        try:
            return await self._launch()
        except WorkerStartError as exc:
            self._state = "unavailable"
            self._unavailable_reason = str(exc)
            raise

    async def _shut_down(self) -> None:
        await self._stop_process()

    async def __aenter__(self) -> WorkerClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- jobs -----------------------------------------------------------------
    def submit(
        self,
        job: SongJob,
        *,
        on_progress: Callable[[JobProgress], None] | None = None,
        on_written: Callable[[JobWritten], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> JobHandle:
        """Send `job` to the worker; the callbacks run on the event loop.

        `on_retry(label)` is called when a worker died while making the job and
        it is tried again. Raises `WorkerBusyError` when `max_in_flight` units are
        in flight, `WorkerError` while the worker is unavailable. A job
        submitted while paused (a scheduler that saw a free slot just before
        `pause`) is held and made after `resume()`.
        """
        callbacks = (on_progress, on_written, on_retry)
        full = self.units_in_flight >= self.max_in_flight
        (handle,) = self._admit([job], [callbacks], full=full)
        self._sent()
        self._send(Submit(job=job))
        return handle

    def submit_batch(self, jobs: list[SongJob], callbacks: list[dict[str, Callable[..., None]]]) -> list[JobHandle]:
        """Send `jobs` to be made in one generation (at most `batch_size` of them; they
        must share adapter, scale, format and steps); they take one slot together.
        `callbacks[i]` holds job i's `on_progress`, `on_written` and `on_retry`, as
        `submit` takes them. Each job ends on its own handle; raises as `submit` does,
        and `ValueError` for jobs that cannot be one batch."""
        self._check_open()
        if not 2 <= len(jobs) <= self.batch_size:
            raise ValueError(f"a batch of {len(jobs)} jobs: allowed is 2 to {self.batch_size}")
        message = SubmitBatch(jobs=tuple(jobs))
        keys = ("on_progress", "on_written", "on_retry")
        hooks = [tuple(c.get(k) for k in keys) for c in callbacks]
        handles = self._admit(jobs, hooks, full=self.units_in_flight >= self.max_in_flight)
        self._sent()
        self._send(message)
        return handles

    def _sent(self) -> None:
        self._last_activity = time.monotonic()
        self._notify()

    # --- internals: processes -------------------------------------------------
    async def _launch(self) -> WorkerReady:
        """Start a worker, resend the jobs in flight, wait for `ready`."""
        assert self._loop is not None
        self._state = "starting"
        self._generation += 1
        generation = self._generation
        self._ready = self._loop.create_future()
        self._exited[generation] = self._loop.create_future()
        spawning = asyncio.ensure_future(asyncio.to_thread(self._spawn, generation))
        try:
            proc = await asyncio.shield(spawning)
        except asyncio.CancelledError:  # closing: keep hold of the process to stop it
            self._proc = await spawning
            raise
        self._proc = proc
        units: dict[str, list[SongJob]] = {}
        for handle in self._handles.values():
            handle.started = False
            units.setdefault(handle.unit, []).append(handle.job_to_send())
        for jobs in units.values():
            self._send(Submit(job=jobs[0]) if len(jobs) == 1 else SubmitBatch(jobs=tuple(jobs)))
        reader = threading.Thread(target=self._read, args=(proc,), name=f"worker-reader-{generation}", daemon=True)
        proc.reader = reader
        reader.start()
        self._last_activity = time.monotonic()
        self._notify()
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except asyncio.TimeoutError:
            self._ready.cancel()
            await self._stop_process()
            raise WorkerStartError(f"the worker was not ready within {self.start_timeout:g} s") from None
        except WorkerStartError:
            await self._reap(proc)
            raise
        self.ready_info = ready
        self._state = "ready"
        self._event("ready", f"worker {ready.pid} ready on {ready.device}", ready.pid)
        self._notify()
        return ready

    def _spawn(self, generation: int) -> WorkerProcess:
        return spawn_worker(self._ctx, worker_main, self.config.model_dump_json(), generation)

    def _read(self, proc: WorkerProcess) -> None:
        """Reader thread: forward messages; report the exit when the process ends."""
        read_messages(proc, lambda message: self._post(self._dispatch, proc, message))
        self._post(self._on_exit, proc)

    def _post(self, callback: Callable[..., None], *args: Any) -> bool:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    def _send(self, message: Message) -> None:
        proc = self._proc
        if proc is None:
            return  # jobs in flight are sent to the next worker when it starts
        try:
            proc.conn.send_bytes(message.to_bytes())
        except (BrokenPipeError, EOFError, OSError) as exc:
            log.warning("cannot send to worker %s: %s", proc.process.pid, exc)

    async def _release(self) -> None:
        await self._stop_process()

    async def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._send(Stop())
        await asyncio.to_thread(join_or_kill, proc.process, self.stop_timeout)
        await self._reap(proc)

    async def _reap(self, proc: WorkerProcess) -> None:
        """Make sure `proc` has ended and was reaped, and its exit was handled."""
        await asyncio.to_thread(join_or_kill, proc.process, 0.1)
        exited = self._exited.get(proc.generation)
        if proc.reader is not None and exited is not None:
            await exited  # the reader thread reaps the process and reports the exit
        else:
            await asyncio.to_thread(proc.process.join)
            proc.conn.close()
        if self._proc is proc:
            self._proc = None

    def _on_exit(self, proc: WorkerProcess) -> None:
        """On the loop: the worker process `proc` has ended."""
        proc.conn.close()
        exited = self._exited.pop(proc.generation, None)
        if exited is not None and not exited.done():
            exited.set_result(None)
        if proc.generation != self._generation:
            return
        if self._proc is proc:
            self._proc = None
        how = describe_exit(proc.process.exitcode)
        if self._ready is not None and not self._ready.done():
            detail = proc.fatal or f"it exited during start-up ({how})"
            self._ready.set_exception(WorkerStartError(f"the worker could not start: {detail}"))
            return
        if self._state != "ready":
            return  # stopped on purpose
        reason, message = proc.kill_reason or ("worker_died", f"the worker died ({how})")
        detail = how if reason == "worker_died" else None
        started = [h for h in self._handles.values() if h.started]
        log.error("%s; %d job(s) in flight, %d started", message, len(self._handles), len(started))
        for handle in started:
            handle.deaths += 1
            if handle.deaths >= self.max_attempts:
                self._finish(
                    handle,
                    JobFailedError(
                        handle.job_id,
                        reason,
                        f"{message}, {handle.deaths} time(s) while making this job",
                        handle.deaths,
                        detail,
                    ),
                )
            elif handle.on_retry is not None:
                handle.on_retry(f"{reason} ({detail})" if detail else reason)
        self._event("died", message, proc.process.pid, tuple(h.job_id for h in started))
        self._state = "starting"
        self._spawn_task(self._restart())

    async def _restart(self) -> None:
        for attempt in range(1, START_FAILURES_ALLOWED + 1):
            try:
                await self._launch()
                return
            except WorkerStartError as exc:
                if self._state != "starting":
                    return  # paused (GPU released) or closed meanwhile: not a failure
                log.error("worker restart %d failed: %s", attempt, exc)
                last = str(exc)
        self._make_unavailable(last)

    async def _watch_stalls(self) -> None:
        """Kill a worker that has work but has said nothing for `stall_timeout` seconds."""
        while True:
            await asyncio.sleep(min(1.0, self.stall_timeout / 4))
            proc = self._proc
            if proc is None or self._state != "ready" or not self._handles:
                continue
            silent = time.monotonic() - self._last_activity
            alive = not wait([proc.process.sentinel], 0)
            if silent > self.stall_timeout and proc.kill_reason is None and alive:
                message = f"the worker was silent for {silent:.0f} s with work to do: killed"
                proc.kill_reason = ("worker_stalled", message)
                log.error("%s (pid %s)", message, proc.process.pid)
                proc.process.kill()

    # --- internals: messages --------------------------------------------------
    def _dispatch(self, proc: WorkerProcess, message: Any) -> None:
        if proc.generation != self._generation:
            return
        self._last_activity = time.monotonic()
        if isinstance(message, WorkerReady):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
            return
        if isinstance(message, WorkerFatal):
            proc.fatal = message.message
            return
        handle = self._handles.get(message.job_id)
        if handle is None:
            return  # a job that already failed for good
        outcome = self._follow(handle, message)
        if outcome is not None:
            self._finish(handle, outcome)
