"""The GPU worker process: owns the music engine and the songwriter, serves jobs.

`worker_main` is the target of a `spawn`ed process (never `fork`: the parent
may have torch threads). It loads `MusicEngine` and the songwriter once, says
`ready`, and then serves the job protocol of `engine.worker.protocol` over its pipe:

- the main thread reads messages and puts jobs in the inbox;
- a writer thread takes jobs in order and has the songwriter write each spec;
- a singer thread sings the written specs, one job (or one `submit_batch`, in
  one generation: `MusicEngine.generate_batch`) at a time, and sends `done`.

Before each song the singer switches to the job's adapter (engine.adapters.cache:
loaded from `ADAPTERS_DIR/<name>/` the first time); an adapter that cannot be
loaded fails that job with reason `adapter_error`, and the worker sings on.

Between writer and singer sits a queue of one, so the worker writes song N+1
while it sings song N, and never runs further ahead than that.

The worker exits when told to `stop`, when its pipe closes, or when its parent
process is gone, so it cannot outlive the bot. It ignores Ctrl-C (SIGINT,
which a terminal sends to the whole process group): the parent decides when it
stops. On `stop` the song being sung is aborted at the next diffusion step.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.adapters.cache import AdapterCache
from engine.settings import Settings, engine_values, settings_from_values
from engine.spec import SongSpec, StationStyle
from engine.worker.protocol import (
    FailureReason,
    JobDone,
    JobFailure,
    JobProgress,
    JobWritten,
    Message,
    SongJob,
    Stop,
    SubmitBatch,
    WorkerFatal,
    WorkerReady,
    read_to_worker,
)

if TYPE_CHECKING:  # the bot imports this module; only the worker process loads the model
    from engine.songwriter.writer import Songwriter

log = logging.getLogger("engine.worker.process")

#: How often the main thread checks that its parent still lives (seconds).
PARENT_CHECK_SECONDS = 1.0
#: Seconds between two progress messages of one job (the last step always goes).
PROGRESS_INTERVAL = 0.2
#: How long the worker waits for its threads when it stops before it exits anyway.
STOP_GRACE_SECONDS = 5.0


class WorkerConfig(BaseModel):
    """How to start a worker; plain data, so it crosses the process boundary.

    `settings` are `engine.settings.Settings` values (lower-case keys): the worker's
    settings are these over its environment, never `.env` (`worker_settings`);
    `from_settings` passes the caller's engine keys, never a bot key.
    `songwriter="template"` writes specs with the deterministic template
    songwriter instead of the GGUF model (fast; for tests and trials).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: dict[str, Any] = Field(default_factory=dict)
    checkpoint: Path | None = None
    variant: str | None = None
    songwriter: Literal["model", "template"] = "model"
    songwriter_max_tokens: int | None = Field(default=None, ge=32, le=4096)
    steps: int | None = Field(default=None, ge=1, le=200)
    torch_threads: int | None = Field(default=None, ge=1, le=256)

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> WorkerConfig:
        """A config whose worker sees the engine keys of `settings` (of any subclass:
        the bot's keys and its token are left out)."""
        return cls(settings=engine_values(settings), **changes)


class _Stopped(Exception):
    """Raised inside a progress callback to abort the song being sung."""


class _Sender:
    """Sends messages from any thread; a closed pipe means the parent is gone."""

    def __init__(self, conn: Connection, gone: threading.Event):
        self._conn = conn
        self._lock = threading.Lock()
        self._gone = gone

    def send(self, message: Message) -> None:
        data = message.to_bytes()
        with self._lock:
            if self._gone.is_set():
                return
            try:
                self._conn.send_bytes(data)
            except (BrokenPipeError, EOFError, OSError):
                self._gone.set()


#: The written jobs of one unit: (job, spec, seconds the songwriter took) each.
_Written = list[tuple[SongJob, SongSpec, float]]


def _ids(written: _Written) -> str:
    return ", ".join(job.job_id for job, _spec, _seconds in written)


class _JobServer:
    """The writer and singer threads, fed by the main thread's inbox."""

    def __init__(
        self,
        conn: Connection,
        engine: Any,
        writer: Songwriter,
        config: WorkerConfig,
        adapters: AdapterCache,
    ):
        self.conn = conn
        self.engine = engine
        self.adapters = adapters
        self.writer = writer
        self.config = config
        self.stopping = threading.Event()
        self.sender = _Sender(conn, self.stopping)
        #: Units of work: one job, or the jobs of a `submit_batch`.
        self.inbox: queue.Queue[tuple[SongJob, ...] | None] = queue.Queue()
        self.to_sing: queue.Queue[_Written | None] = queue.Queue(1)

    def serve(self, parent_pid: int) -> None:
        threads = [
            threading.Thread(target=self._write_loop, name="writer", daemon=True),
            threading.Thread(target=self._sing_loop, name="singer", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            self._read_loop(parent_pid)
        finally:
            self.stopping.set()
            self.inbox.put(None)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _read_loop(self, parent_pid: int) -> None:
        while not self.stopping.is_set():
            if not self.conn.poll(PARENT_CHECK_SECONDS):
                if os.getppid() != parent_pid:
                    log.warning("worker: the bot process is gone; exiting")
                    return
                continue
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                log.info("worker: pipe closed; exiting")
                return
            try:
                message = read_to_worker(data)
            except ValidationError as exc:
                self._refuse(data, exc)
                continue
            if isinstance(message, Stop):
                log.info("worker: stop requested")
                return
            if isinstance(message, SubmitBatch):
                self.inbox.put(message.jobs)
            else:
                self.inbox.put((message.job,))

    def _refuse(self, data: bytes, exc: ValidationError) -> None:
        """Answer a malformed submit with `failed` when its job id can be read."""
        try:
            job_id = json.loads(data)["job"]["job_id"]
        except (ValueError, KeyError, TypeError):
            job_id = None
        log.error("worker: malformed message refused: %s", exc)
        if isinstance(job_id, str) and job_id:
            self.sender.send(JobFailure(job_id=job_id[:100], reason="bad_job", message=str(exc)))

    def _fail(self, job: SongJob, reason: FailureReason, message: str) -> None:
        log.error("job %s failed (%s): %s", job.job_id, reason, message)
        self.sender.send(JobFailure(job_id=job.job_id, reason=reason, message=message))

    def _write_loop(self) -> None:
        while True:
            unit = self.inbox.get()
            if unit is None or self.stopping.is_set():
                return
            written = [item for item in map(self._write, unit) if item is not None]
            while written and not self.stopping.is_set():
                try:
                    self.to_sing.put(written, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def _write(self, job: SongJob) -> tuple[SongJob, SongSpec, float] | None:
        """The job's spec (written now unless the job brings one); None if it failed."""
        if job.spec is not None:
            return job, job.spec, 0.0
        self.sender.send(JobProgress(job_id=job.job_id, stage="writing", step=0, total=1))
        try:
            result = self.writer.compose(job.theme, job.style, duration=job.duration, seed=job.seed, recent=job.recent)
        except Exception as exc:  # the songwriter should not raise; never lose the job
            self._fail(job, "songwriter_error", f"{type(exc).__name__}: {exc}")
            return None
        self.sender.send(
            JobWritten(
                job_id=job.job_id,
                spec=result.spec,
                source=result.source,
                seconds=result.seconds,
                fallback_reason=result.fallback_reason,
            )
        )
        return job, result.spec, result.seconds

    def _sing_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                item = self.to_sing.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                return
            try:
                self._sing(item)
            except _Stopped:
                log.info("job(s) %s aborted: the worker is stopping", _ids(item))
                return

    def _sing(self, written: _Written) -> None:
        """Sing the unit's songs in one generation; answer each job on its own."""
        import torch

        from engine.errors import AdapterError, EngineError, OutOfMemoryError

        first = written[0][0]
        steps = first.steps or self.config.steps
        last_sent = 0.0

        def progress(step: int, total: int) -> None:
            nonlocal last_sent
            if self.stopping.is_set():
                raise _Stopped
            now = time.monotonic()
            if step == total or now - last_sent >= PROGRESS_INTERVAL:
                last_sent = now
                for job, _spec, _seconds in written:
                    self.sender.send(JobProgress(job_id=job.job_id, stage="singing", step=step, total=total))

        for job, _spec, _seconds in written:
            self.sender.send(JobProgress(job_id=job.job_id, stage="singing", step=0, total=steps or 0))
        started = time.monotonic()
        try:
            self.adapters.use(first.adapter, first.adapter_scale)
        except AdapterError as exc:
            self._fail_all(written, "adapter_error", str(exc))
            return
        specs = [spec for _job, spec, _seconds in written]
        try:
            if len(specs) == 1:
                tracks = self.engine.generate(specs[0], fmt=first.fmt, steps=steps, progress=progress)
            else:
                tracks = self.engine.generate_batch(specs, fmt=first.fmt, steps=steps, progress=progress)
        except _Stopped:
            raise
        except (OutOfMemoryError, torch.OutOfMemoryError) as exc:
            self._fail_all(written, "oom", str(exc))
            return
        except (EngineError, ValueError) as exc:
            self._fail_all(written, "engine_error", str(exc))
            return
        except Exception as exc:
            log.exception("job(s) %s: unexpected error while singing", _ids(written))
            self._fail_all(written, "engine_error", f"{type(exc).__name__}: {exc}")
            return
        sing_seconds = time.monotonic() - started
        for (job, _spec, write_seconds), track in zip(written, tracks, strict=True):
            self.sender.send(
                JobDone(
                    job_id=job.job_id,
                    track=track,
                    write_seconds=write_seconds,
                    sing_seconds=sing_seconds,
                )
            )

    def _fail_all(self, written: _Written, reason: FailureReason, message: str) -> None:
        for job, _spec, _seconds in written:
            self._fail(job, reason, message)


def worker_settings(config: WorkerConfig) -> Settings:
    """The worker's settings: the caller's values over the environment. `.env` is
    never read, so no bot key (nor the Discord token) reaches the worker."""
    return settings_from_values(config.settings)


def worker_log_file(log_file: Path | None) -> Path | None:
    """The worker's own log file beside the bot's (`radio.log` -> `radio-worker.log`):
    two processes must not rotate one file."""
    return None if log_file is None else log_file.with_name(f"{log_file.stem}-worker.log")


def _load(config: WorkerConfig) -> tuple[Any, Songwriter, str, AdapterCache]:
    """Engine, songwriter, device name and adapter cache, as the config says."""
    import dataclasses

    from tqdm import tqdm

    from engine.gpu.tiers import detect_device, resolve
    from engine.logs import setup_logging
    from engine.music_engine import MusicEngine
    from engine.songwriter.writer import Songwriter, SongwriterConfig

    settings = worker_settings(config)
    setup_logging(settings.log_level, settings.secrets, worker_log_file(settings.log_file))
    # tqdm (diffusers' loading bars) would make a multiprocessing semaphore that the
    # worker's os._exit never unlinks; a thread lock serves a process without children.
    tqdm.set_lock(threading.RLock())
    if config.torch_threads is not None:
        import torch

        torch.set_num_threads(config.torch_threads)
    policy = resolve(settings, detect_device(settings))
    engine = MusicEngine(settings, policy=policy, checkpoint=config.checkpoint, variant=config.variant)
    writer_config = SongwriterConfig.from_settings(settings, policy)
    if config.songwriter == "template":
        writer_config = dataclasses.replace(writer_config, model=None, fallback_model=None)
    if config.songwriter_max_tokens is not None:
        writer_config = dataclasses.replace(writer_config, max_tokens=config.songwriter_max_tokens)
    adapters = AdapterCache(engine, settings.adapters_dir, settings.worker_max_adapters)
    writer = Songwriter(writer_config)
    writer.load()  # the model, the language identifier and the word lists, before "ready"
    writer.prepare([StationStyle().language])  # a new station's language; others on their first song
    return engine, writer, str(engine.device), adapters


def worker_main(conn: Connection, config_json: str, parent_pid: int) -> None:
    """Entry point of the worker process; see the module docstring."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gone = threading.Event()
    sender = _Sender(conn, gone)
    started = time.monotonic()
    try:
        config = WorkerConfig.model_validate_json(config_json)
        engine, writer, device, adapters = _load(config)
    except Exception as exc:
        # The parent says why in one line (WorkerFatal); the traceback goes to the log file.
        log.debug("worker: cannot start", exc_info=True)
        sender.send(WorkerFatal(message=f"{type(exc).__name__}: {exc}"))
        conn.close()
        logging.shutdown()
        os._exit(3)
    sender.send(
        WorkerReady(
            pid=os.getpid(),
            device=device,
            songwriter=config.songwriter,
            load_seconds=time.monotonic() - started,
            batch_size=engine.policy.batch_size,
        )
    )
    log.info("worker %d ready on %s in %.1f s", os.getpid(), device, time.monotonic() - started)
    _JobServer(conn, engine, writer, config, adapters).serve(parent_pid)
    conn.close()
    logging.shutdown()
    # A songwriter call cannot be interrupted; do not wait for it at interpreter exit.
    os._exit(0)
