"""What every song backend shares: handles, events, errors, slots and the busy switch.

`SongBackendBase` is the common part of `engine.worker.client.WorkerClient`
(the local worker process) and `engine.worker.cluster.backend.RayBackend` (song workers
on a Ray cluster): the jobs in flight and their `JobHandle`s, the checks of
`submit`, waiting for a slot or a change, pausing (optionally releasing the
GPU) and resuming, becoming unavailable, and the events the stations listen
to. A subclass starts and stops its workers (`_launch`, `_release`) and
carries the jobs to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.background import BackgroundTasks
from engine.errors import WorkerError
from engine.worker.protocol import (
    FailureReason,
    JobDone,
    JobFailure,
    JobProgress,
    JobWritten,
    SongJob,
)

log = logging.getLogger("engine.backend")

EventKind = Literal["ready", "died", "unavailable", "paused", "resumed"]


class WorkerStartError(WorkerError):
    """The worker process could not start; the message says why."""


class WorkerBusyError(WorkerError):
    """`submit` was called without a free slot (all in use, paused or unavailable)."""


class WorkerClosedError(WorkerError):
    """The client was closed; jobs still in flight end with this error."""


class JobFailedError(WorkerError):
    """A job failed for good. `reason` is a `FailureReason` category; `detail` a short
    qualifier such as the signal that killed the worker (`SIGKILL`)."""

    def __init__(
        self,
        job_id: str,
        reason: FailureReason,
        message: str,
        attempts: int,
        detail: str | None = None,
    ):
        self.job_id = job_id
        self.reason: FailureReason = reason
        self.message = message
        self.attempts = attempts
        self.detail = detail
        super().__init__(f"job {job_id} failed ({self.label}): {message}")

    @property
    def label(self) -> str:
        """What statistics count: `worker_died (SIGKILL)`, `oom`, ..."""
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


@dataclass(frozen=True)
class WorkerEvent:
    """Something the bot may want to show or count: a start, a death, a pause."""

    kind: EventKind
    message: str
    pid: int | None = None
    job_ids: tuple[str, ...] = ()


@dataclass(eq=False)
class JobHandle:
    """A job in flight; `await handle` gives its `JobDone` or raises `JobFailedError`."""

    job: SongJob
    future: asyncio.Future[JobDone]
    on_progress: Callable[[JobProgress], None] | None = None
    on_written: Callable[[JobWritten], None] | None = None
    on_retry: Callable[[str], None] | None = None
    progress: JobProgress | None = None
    written: JobWritten | None = None
    deaths: int = 0
    started: bool = field(default=False, repr=False)  # by the worker running now
    unit: str = ""  # the first job id of the `submit_batch` it came in; its own id alone

    def __await__(self) -> Generator[Any, None, JobDone]:
        return self.future.__await__()

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def attempt(self) -> int:
        """1 on the first worker, 2 after one death, ..."""
        return self.deaths + 1

    def job_to_send(self) -> SongJob:
        if self.written is None or self.job.spec is not None:
            return self.job
        return self.job.model_copy(update={"spec": self.written.spec})


class SongBackendBase:
    """See the module docstring. `what` names the workers in messages."""

    what = "the worker"

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_attempts: int,
        on_event: Callable[[WorkerEvent], None] | None,
    ):
        if not 1 <= max_in_flight <= 8:
            raise ValueError(f"max_in_flight={max_in_flight}: allowed is 1 to 8")
        if not 1 <= max_attempts <= 10:
            raise ValueError(f"max_attempts={max_attempts}: allowed is 1 to 10")
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.on_event = on_event
        self._state: str = "new"
        self._handles: dict[str, JobHandle] = {}
        self._busy_reason: str | None = None
        self._unavailable_reason: str | None = None
        self._changed = asyncio.Event()
        self._tasks = BackgroundTasks(log, f"{self.what}: background task")

    @property
    def busy_reason(self) -> str | None:
        """Why the backend hands out no work (paused), or None."""
        return self._busy_reason

    @property
    def unavailable_reason(self) -> str | None:
        """Why the workers cannot be started, once their starts failed."""
        return self._unavailable_reason

    @property
    def in_flight(self) -> list[JobHandle]:
        return list(self._handles.values())

    async def close(self) -> None:
        """Stop the workers for good; what is still in flight ends with `WorkerClosedError`."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._tasks.cancel()
        await self._shut_down()
        for handle in list(self._handles.values()):
            self._finish(handle, WorkerClosedError(f"job {handle.job_id}: {self.what} was closed"))
        self._notify()

    async def pause(self, reason: str, *, release_gpu: bool = True) -> None:
        """Hand out no more work; return once the jobs in flight have ended.

        With `release_gpu` the workers are stopped too, so their GPU memory is
        free (for training); `resume()` starts them again.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("pause(reason): give a short reason to show listeners, e.g. 'training'")
        self._check_open()
        self._busy_reason = reason.strip()
        self._event("paused", f"generation paused: {self._busy_reason}")
        self._notify()
        pending = [handle.future for handle in self._handles.values()]
        if pending:
            await asyncio.wait(pending)
        if release_gpu and self._state in ("ready", "starting") and self._busy_reason is not None:
            self._state = "stopping"
            await self._release()
            self._state = "released"

    async def resume(self) -> None:
        """Hand out work again, starting the workers if they were released or unavailable."""
        self._check_open()
        self._busy_reason = None
        if self._state in ("released", "unavailable"):
            self._unavailable_reason = None
            try:
                await self._launch()
            except WorkerStartError as exc:
                self._make_unavailable(str(exc))
                raise
        self._event("resumed", "generation resumed")
        self._notify()

    async def wait_for_slot(self) -> None:
        """Return when `submit` would take a job; raises `WorkerClosedError` once closed."""
        while self.free_slots <= 0:
            self._check_open()
            await self.wait_changed()

    async def wait_changed(self) -> None:
        """Return at the next change of state, pause, slot or availability."""
        await self._changed.wait()

    @property
    def free_slots(self) -> int:
        raise NotImplementedError

    @property
    def batch_size(self) -> int:
        """The most jobs one `submit_batch` may carry; backends that make several songs in
        one generation override it."""
        return 1

    def submit_batch(self, jobs: list[SongJob], callbacks: list[dict[str, Callable[..., None]]]) -> list[JobHandle]:
        """Jobs made together in one generation; see `batch_size`."""
        raise ValueError(f"{self.what} makes one song per generation (batch size 1)")

    @property
    def units_in_flight(self) -> int:
        """Slots in use: one per job sent alone, one per batch."""
        return len({handle.unit for handle in self._handles.values()})

    def summary(self) -> str:
        """The workers in a few words, for `/radio_stats`."""
        raise NotImplementedError

    async def _launch(self) -> Any:
        """Start the workers; `WorkerStartError` when they cannot start."""
        raise NotImplementedError

    async def _release(self) -> None:
        """Stop the workers so their GPU memory is free."""
        raise NotImplementedError

    async def _shut_down(self) -> None:
        """Stop the workers for good (`close`)."""
        raise NotImplementedError

    def _admit(
        self,
        jobs: list[SongJob],
        callbacks: list[tuple[Callable[..., None] | None, ...]],
        *,
        full: bool,
    ) -> list[JobHandle]:
        """The checks every `submit` makes, then new handles in flight for one unit of
        work (a job, or the jobs of one batch), which takes one slot; `full`: no slot."""
        self._check_open()
        for job in jobs:
            if not isinstance(job, SongJob):
                raise TypeError(f"submit() takes an engine.worker.protocol.SongJob, not {type(job).__name__}")
            if job.job_id in self._handles:
                raise ValueError(f"job id {job.job_id!r} is already in flight: ids must be unique")
        names = ", ".join(job.job_id for job in jobs)
        if self._state == "unavailable":
            raise WorkerError(f"cannot take job {names}: {self._unavailable_reason}")
        if full:
            raise WorkerBusyError(f"cannot take job {names} now: all {self.max_in_flight} slots are in use")
        loop = asyncio.get_running_loop()
        handles = []
        for job, hooks in zip(jobs, callbacks, strict=True):
            handle = JobHandle(job, loop.create_future(), *hooks, unit=jobs[0].job_id)
            self._handles[job.job_id] = handle
            handles.append(handle)
        return handles

    def _check_open(self) -> None:
        if self._state == "closed":
            raise WorkerClosedError(f"{self.what} is closed")
        if self._state == "new":
            raise WorkerError("call start() first")

    def _make_unavailable(self, reason: str) -> None:
        self._state = "unavailable"
        self._unavailable_reason = reason
        for handle in list(self._handles.values()):
            self._finish(
                handle,
                JobFailedError(handle.job_id, "worker_start_failed", reason, handle.attempt),
            )
        self._event("unavailable", f"{self.what} cannot be started: {reason}")
        self._notify()

    @staticmethod
    def _follow(handle: JobHandle, message: Any) -> JobDone | JobFailedError | None:
        """Note a worker's message about `handle`'s job: progress and the written spec go
        to its callbacks; `done` and `failed` are returned as the job's outcome."""
        if isinstance(message, JobProgress):
            handle.started = True
            handle.progress = message
            if handle.on_progress is not None:
                handle.on_progress(message)
        elif isinstance(message, JobWritten):
            handle.written = message
            if handle.on_written is not None:
                handle.on_written(message)
        elif isinstance(message, JobDone):
            return message
        elif isinstance(message, JobFailure):
            return JobFailedError(handle.job_id, message.reason, message.message, handle.attempt)
        return None

    def _finish(self, handle: JobHandle, outcome: JobDone | BaseException) -> None:
        self._handles.pop(handle.job_id, None)
        if not handle.future.done():
            if isinstance(outcome, BaseException):
                handle.future.set_exception(outcome)
            else:
                handle.future.set_result(outcome)
        self._notify()

    def _event(self, kind: EventKind, message: str, pid: int | None = None, job_ids: tuple[str, ...] = ()) -> None:
        if self.on_event is not None:
            try:
                self.on_event(WorkerEvent(kind, message, pid, job_ids))
            except Exception:
                log.exception("worker event handler failed")

    def _notify(self) -> None:
        """Wake everyone waiting in `wait_changed` (each waits on the event of its time)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn_task(self, coro: Any) -> None:
        self._tasks.spawn(coro)
