"""SongActor: one GPU worker on a Ray cluster, the local worker's job server inside.

The actor loads `MusicEngine` and the songwriter once (as the local worker
process does, `engine.worker.process`) and runs the very same job server (writer and
singer threads, error handling, adapter switching) in a thread of its own
process, talking to it through a pipe in the job protocol of `engine.worker.protocol`. So
a song is made exactly as in the local worker; only the transport differs:

- `make(job_json, adapter)` is a streaming generator (call it with
  `num_returns="streaming"`): it submits the job and yields each protocol
  message of that job as JSON bytes while the song is made (`progress`,
  `written`), then `done` followed by the audio file's bytes, or `failed`.
  Every yield is an object in Ray's object store, so the audio reaches the
  bot without a shared disk; the actor deletes its own copy.
- Adapters come by content hash: `adapter` is `(name, digest, [ref])`, the
  ref (kept in a list so Ray does not fetch it for every call) pointing to the
  packed folder (`engine.worker.cluster.blobs`) in the object store. The actor fetches
  and unpacks it only when it does not hold that digest under that name yet;
  the job server then loads it as it would from `ADAPTERS_DIR`.

Tracks and adapters live in a scratch folder of the actor's own machine; the
actor's `TRACKS_DIR` and `ADAPTERS_DIR` point there. Ray restarts a lost
actor (`max_restarts`), which loads the models again; the bot's backend
(`engine.worker.cluster.backend`) sends the job it lost to another actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

from engine.worker.cluster.blobs import unpack_folder
from engine.worker.process import WorkerConfig, _JobServer, _load
from engine.worker.protocol import JobDone, JobFailure, SongJob, Stop, Submit, read_from_worker

log = logging.getLogger("engine.worker.cluster.actor")

#: (adapter name, content hash, [ObjectRef of the packed folder]) or None for the base model.
AdapterRef = tuple[str, str, list[Any]] | None


class SongActor:
    """See the module docstring. Created by `engine.worker.cluster.backend` as a Ray actor."""

    def __init__(self, config_json: str, index: int):
        started = time.monotonic()
        self.index = index
        self.scratch = Path(tempfile.mkdtemp(prefix=f"radio-song-worker-{index}-"))
        config = WorkerConfig.model_validate_json(config_json)
        local = {"tracks_dir": str(self.scratch / "tracks"), "adapters_dir": str(self.scratch / "adapters")}
        self.config = config.model_copy(update={"settings": {**config.settings, **local}})
        engine, writer, self.device, adapters = _load(self.config)
        self.digests: dict[str, str] = {}  # adapter name -> the content hash unpacked
        self._adapter_lock = threading.Lock()
        self._queues: dict[str, asyncio.Queue[bytes | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn, server_end = Pipe(duplex=True)
        server = _JobServer(server_end, engine, writer, self.config, adapters)
        threading.Thread(target=server.serve, args=(os.getppid(),), name="job-server", daemon=True).start()
        self.load_seconds = time.monotonic() - started
        log.info("song worker %d ready on %s in %.1f s", index, self.device, self.load_seconds)

    async def ready(self) -> dict[str, Any]:
        """Who and where this actor is; answers once the models are loaded."""
        self._start_reader()
        return {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "device": self.device,
            "songwriter": self.config.songwriter,
            "load_seconds": self.load_seconds,
        }

    async def adapters(self) -> dict[str, str]:
        """Adapter name -> content hash, of the adapters this actor has received."""
        return dict(self.digests)

    async def make(self, job_json: str, adapter: AdapterRef = None):
        """Make one song; yields protocol messages, then the audio (see the module docstring)."""
        self._start_reader()
        job = SongJob.model_validate_json(job_json)
        if adapter is not None:
            try:
                await asyncio.to_thread(self._receive_adapter, *adapter)
            except Exception as exc:  # the job fails; the actor sings on
                message = f"adapter '{adapter[0]}' did not arrive: {type(exc).__name__}: {exc}"
                yield JobFailure(job_id=job.job_id, reason="adapter_error", message=message).to_bytes()
                return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queues[job.job_id] = queue
        try:
            self._conn.send_bytes(Submit(job=job).to_bytes())
            while True:
                data = await queue.get()
                if data is None:  # the job server stopped
                    raise RuntimeError(f"song worker {self.index}: the job server stopped")
                message = read_from_worker(data)
                if isinstance(message, JobDone):
                    yield data
                    yield await asyncio.to_thread(self._take_audio, Path(message.track.path))
                    return
                yield data
                if isinstance(message, JobFailure):
                    return
        finally:
            self._queues.pop(job.job_id, None)

    def stop(self) -> None:
        """Stop the job server (the song being sung is aborted) and drop the scratch folder."""
        with contextlib.suppress(OSError):
            self._conn.send_bytes(Stop().to_bytes())
        shutil.rmtree(self.scratch, ignore_errors=True)

    # --- internals ------------------------------------------------------------
    def _start_reader(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            threading.Thread(target=self._read, name="job-reader", daemon=True).start()

    def _read(self) -> None:
        """Reader thread: hand each message of the job server to its job's queue."""
        assert self._loop is not None
        while True:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                self._loop.call_soon_threadsafe(self._end_all)
                return
            job_id = read_from_worker(data).model_dump().get("job_id")
            self._loop.call_soon_threadsafe(self._deliver, job_id, data)

    def _deliver(self, job_id: str | None, data: bytes) -> None:
        queue = self._queues.get(job_id) if job_id else None
        if queue is not None:
            queue.put_nowait(data)

    def _end_all(self) -> None:
        for queue in self._queues.values():
            queue.put_nowait(None)

    def _receive_adapter(self, name: str, digest: str, refs: list[Any]) -> None:
        """Unpack adapter `name` unless this actor holds that content already."""
        import ray

        with self._adapter_lock:
            if self.digests.get(name) == digest:
                return
            data = ray.get(refs[0])
            unpack_folder(data, Path(self.config.settings["adapters_dir"]) / name)
            self.digests[name] = digest
        log.info("song worker %d received adapter '%s' (%s)", self.index, name, digest[:12])

    @staticmethod
    def _take_audio(path: Path) -> bytes:
        data = path.read_bytes()
        path.unlink(missing_ok=True)
        return data
