"""Making songs: keep the buffer topped up with auto-fill jobs, hand jobs to the
worker (through the `StationManager`) and follow each to its track or failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from bot.station.base import StationBase
from bot.station.config import RECENT_SONGS
from bot.store import Job, StateError, StoreError, TrackRecord
from bot.taste.profile import explores, lean_from
from engine.spec import SongSpec, Track
from engine.worker.client import JobFailedError, JobHandle, WorkerClosedError
from engine.worker.protocol import JobDone, JobProgress, JobWritten, SongJob

log = logging.getLogger("bot.station")


class SongMaking(StationBase):
    """The station's part that makes songs; see the module docstring."""

    async def top_up(self) -> None:
        """Keep `buffer_size` songs buffered or in the making (auto mode), no more.

        Auto-fill runs only while the station is on air and someone listens: a
        station nobody hears makes no songs (listeners' requests are still made),
        so servers that do not listen never take the GPU from those that do."""
        auto = self.settings.auto_mode and self.playing and self._audience
        async with self._fill_lock:
            added = await self._db(self._top_up, auto)
        if added:
            self.maker.wake()

    def _top_up(self, auto: bool) -> int:
        """In a thread: queue or cancel auto-fill jobs; return how many were queued.

        Jobs are counted before tracks: a job finishing in between is then counted
        twice (one song too few for now), never not at all (one too many).
        """
        pending = self.store.pending_jobs(self.guild_id)
        buffered = len(self.store.buffered_tracks(self.guild_id))
        have = buffered + len(pending)
        target = self.config.buffer_size if auto else 0
        if have < target:
            for _ in range(target - have):
                self.store.enqueue_auto(self.guild_id)
            return target - have
        spare = [job for job in reversed(pending) if job.kind == "auto" and job.status == "queued"]
        for job in spare[: have - target]:
            # The maker may have taken it since `pending` was read: then it finishes and plays.
            with contextlib.suppress(StateError):
                self.store.cancel_job(job.id)
        return 0

    # --- jobs (called by the StationManager) ----------------------------------
    async def take_job(self) -> tuple[Job, SongJob] | None:
        """Take the next queued job (now `writing`) and describe it for the worker."""
        job = await self._db(self.store.next_job, self.guild_id)
        if job is None:
            return None
        style = self.settings.style(self.config.lyrics_rating)
        if job.genre:
            style = style.model_copy(update={"genre": job.genre})
        if job.kind == "auto" and self.settings.taste and not explores(job.id):
            profile = await self._db(self.store.taste_profile, self.guild_id)
            style = style.model_copy(update={"lean": lean_from(profile, self.settings)})
        duration = job.length or min(self.config.default_duration, self.settings.max_length)
        try:
            song = SongJob(
                job_id=f"job-{job.id}-{job.attempts}",  # unique even if an old attempt lingers
                theme=job.theme,
                style=style,
                duration=duration,
                recent=await self._recent_specs(),
                spec=job.spec,
                steps=self.config.steps,
                adapter=self.settings.adapter,
                adapter_scale=self.settings.adapter_scale,
            )
        except ValidationError as exc:  # a value the store let through: fail this job only
            log.error("guild %d: job %d cannot be sent to the worker: %s", self.guild_id, job.id, exc)
            await self._db(self.store.fail_job, job.id, "bad_job", max_attempts=1)
            self.maker.wake()
            return None
        self._making[job.id] = "waiting for the worker"
        self._job_adapters[job.id] = song.adapter
        return job, song

    async def _recent_specs(self) -> tuple[SongSpec, ...]:
        plays = await self._db(self.store.history, self.guild_id, RECENT_SONGS)
        specs = [play.track.spec for play in plays] + [t.spec for t in self._buffer]
        # Titles and captions are what repeats are judged by; lyrics would only
        # make the message big.
        return tuple(spec.model_copy(update={"lyrics": ""}) for spec in specs[-RECENT_SONGS:])

    def job_callbacks(self, job: Job) -> dict[str, Callable[..., None]]:
        """The `WorkerClient.submit` callbacks that follow `job`."""
        written: list[asyncio.Task] = []

        def on_progress(progress: JobProgress) -> None:
            self._making[job.id] = progress.describe()
            self._notify()

        def on_written(message: JobWritten) -> None:
            # Kept so a retry after a restart skips the songwriter.
            written.append(self._spawn(self._db(self.store.mark_job_singing, job.id, message.spec)))

        def on_retry(label: str) -> None:
            self._making[job.id] = f"retrying after {label}"
            self._notify()
            self._spawn(self._db(self.store.record_failure, self.guild_id, label, job_id=job.id))

        self._written[job.id] = written
        return {"on_progress": on_progress, "on_written": on_written, "on_retry": on_retry}

    async def run_job(self, job: Job, handle: JobHandle) -> TrackRecord | None:
        """Follow `job` to its end: buffer the track, or record the failure."""
        try:
            done: JobDone | None = await handle
            failure: JobFailedError | None = None
        except WorkerClosedError:
            return None  # shutting down: the store still has it in flight; recover() requeues it
        except JobFailedError as exc:
            done, failure = None, exc
        finally:
            for task in self._written.pop(job.id, []):
                await asyncio.gather(task, return_exceptions=True)
            self._making.pop(job.id, None)
            adapter = self._job_adapters.pop(job.id, None)
        if failure is not None:
            log.warning("guild %d: job %d failed: %s", self.guild_id, job.id, failure)
            if failure.reason == "adapter_error":
                await self._drop_adapter(adapter, failure.message)
            try:
                await self._db(self.store.fail_job, job.id, failure.label, max_attempts=1)
            except StoreError as exc:
                log.error("guild %d: cannot record the failure of job %d: %s", self.guild_id, job.id, exc)
            self._notify()
            await self.top_up()
            return None
        assert done is not None
        try:
            record = await self._db(
                lambda: self.store.add_track(
                    self.guild_id,
                    done.track,
                    job_id=job.id,
                    generation_seconds=max(done.generation_seconds, 1e-6),
                )
            )
        except StoreError as exc:
            await self._save_failed(job, Path(done.track.path), exc)
            return None
        self._buffer.append(record)
        self._prepare_next()
        log.info(
            "guild %d: %r ready (%.1f s of audio in %.1f s); %d buffered",
            self.guild_id,
            record.title,
            record.duration,
            record.generation_seconds,
            len(self._buffer),
        )
        self._notify()
        await self.top_up()
        await self.maker.prune_tracks()
        return record

    async def _save_failed(self, job: Job, path: Path, error: StoreError) -> None:
        """The finished track could not be saved (disk full, file vanished): its file
        goes, and the job goes back to the queue (or fails after its last attempt),
        so it holds no listener's slot and leaves nothing behind."""
        log.error("guild %d: job %d: cannot save its track: %s", self.guild_id, job.id, error)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            log.warning("guild %d: cannot delete %s: %s", self.guild_id, path, exc)
        try:
            failed = await self._db(self.store.fail_job, job.id, "save_failed")
        except StoreError as exc:
            log.error("guild %d: cannot record the failure of job %d: %s", self.guild_id, job.id, exc)
        else:
            if failed.status == "queued":
                self.maker.wake()
        self._notify()
        await self.top_up()

    async def _drop_adapter(self, adapter: str | None, problem: str) -> None:
        """The job's adapter cannot be loaded: unless the station has chosen another
        one meanwhile, go on with the base model and say why."""
        if adapter is None or self.settings.adapter != adapter:
            return
        log.warning("guild %d: adapter %r switched off: %s", self.guild_id, self.settings.adapter, problem)
        try:
            await self.set_adapter(None)
        except StoreError as exc:
            log.error("guild %d: cannot switch the adapter off: %s", self.guild_id, exc)
        self.adapter_problem = problem

    async def add_upload(self, track: Track, user_id: int, user_name: str, seconds: float) -> TrackRecord:
        """A listener's own audio file (`/radio_upload`) joins the buffer as their
        request, within the same limits (`QueueFullError`); `seconds` is how long it
        took to check and convert it."""
        limits = (self.config.max_per_user, self.config.max_per_guild)
        record = await self._db(
            lambda: self.store.add_track(
                self.guild_id, track, generation_seconds=seconds, uploader=(user_id, user_name), limits=limits
            )
        )
        self._buffer.append(record)
        self._prepare_next()
        self._notify()
        return record

    async def refuse_job(self, job: Job, reason: str) -> None:
        """The worker would not take `job` (unavailable): it fails with `reason`."""
        self._making.pop(job.id, None)
        self._job_adapters.pop(job.id, None)
        await self._db(self.store.fail_job, job.id, reason, max_attempts=1)
