"""Station: one guild's radio. Queue, buffer, auto mode, requests, play loop, status.

The station keeps nothing that matters only in memory: its settings, queue,
buffer and history live in the store (SQLite), which it calls through
`asyncio.to_thread`, so the event loop never waits on the disk and a restart
resumes where it stopped. It has no discord import: the player it drives is
anything with the `Player` methods (the voice player in the bot, the local
listener in `bot.local`).

Making songs. Listeners' requests join the store's fair queue (round-robin
between listeners, per-listener and per-station limits). In auto mode the
station keeps `buffer_size` songs buffered or in the making by queueing
auto-fill jobs, which run only when no request waits. It does not run jobs
itself: the `StationManager` (bot.stations) hands jobs to the GPU worker when
the worker has a free slot, taking them round-robin across stations, requests
first. The station then follows each job (progress, spec, result) and puts
the finished track in its buffer.

Playing. The play loop hands the player the next track the moment the current
one ends: a buffered listener request first, then the oldest buffered track.
The store's bookkeeping (finish the old play, start the new one) runs after
the next track has started, so it adds nothing to the gap. A track whose file
vanished is skipped with a warning. When the buffer is empty while something
should play (auto mode, or requests in the making) and the worker is working,
listeners hear silence: an *underrun*, counted in the stats with its length.
When the GPU is busy (paused for training) or the worker is unavailable, the
station plays its buffer and then replays its library, and says so in its
status.

Taste. An auto-fill job carries the lean the listeners' reactions taught
(bot.taste: `StationStyle.lean`), unless taste is off or the job is one of
the one in five that explore; the library replay prefers favourites
(bot.favorites).

Adapters. A station may sing with a LoRA/LoKR adapter (`set_adapter`: a
folder name in ADAPTERS_DIR and a scale); every job it hands out carries them
and the worker switches to them before singing. A job that fails because the
adapter cannot be loaded switches the station back to the base model, so it
does not fail job after job, and its status says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from bot.adapter_library import require_adapter
from bot.favorites import ReplayPicker
from bot.presets import PRESETS
from bot.store import (
    GuildSettings,
    InvalidValueError,
    Job,
    Play,
    StateError,
    StationStats,
    Store,
    StoreError,
    TrackRecord,
)
from bot.store_checks import MAX_HISTORY, MAX_QUEUE_LIMIT, check_bool, check_int, check_rating
from bot.taste import explores, lean_from
from engine.content_rating import blocked_words, check_theme
from engine.jobs import JobDone, JobProgress, JobWritten, SongJob
from engine.settings import Settings
from engine.spec import MAX_DURATION, MIN_DURATION, SongSpec, Track
from engine.worker_client import JobFailedError, JobHandle, WorkerClosedError

log = logging.getLogger("bot.station")

STYLE_KEYS = ("genre", "theme", "mood", "language", "max_length")
#: Settings of the Discord side, kept with the station so a restart finds them.
CHANNEL_KEYS = ("dj_role_id", "text_channel_id", "voice_channel_id")
#: Songs the songwriter is shown so it does not repeat them.
RECENT_SONGS = 8

StationState = Literal["stopped", "playing", "paused", "waiting"]


class Player(Protocol):
    """What the station needs of whatever makes the sound.

    A player may also have `prepare(record)`: the station calls it with the
    track it will play next, while the current one plays, so the player can
    open it ahead (the Discord player starts ffmpeg) and start it without a gap.
    """

    async def play(self, record: TrackRecord) -> bool:
        """Play the track; return when it ended: True when it played to its end,
        False when it was cut short by `stop()`. Raise `OSError` when its file
        cannot be read."""
        ...

    def stop(self) -> None:
        """Cut the current track short."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class SongMaker(Protocol):
    """What the station needs of the `StationManager`."""

    @property
    def busy_reason(self) -> str | None:
        """Why no fresh songs are being made (GPU busy, worker unavailable), or None."""
        ...

    def wake(self) -> None:
        """New jobs may be waiting in the queue."""
        ...

    async def prune_tracks(self) -> None:
        """Keep the track files of every station within the disk budget."""
        ...


@dataclass(frozen=True)
class StationConfig:
    """The station's limits, from settings; every value is checked."""

    buffer_size: int = 2
    max_per_user: int = 3
    max_per_guild: int = 20
    default_duration: int = 60
    disk_budget_bytes: int = 2048 * 1024**2
    steps: int | None = None
    #: ADAPTERS_DIR: `set_adapter` accepts only adapters found here (None: any safe name).
    adapters_dir: Path | None = None
    #: LYRICS_RATING: the rating of a station that has not chosen its own.
    lyrics_rating: str = "clean"

    def __post_init__(self) -> None:
        check_int("buffer_size", self.buffer_size, 1, 20, " (BUFFER_SIZE)")
        check_int("max_per_user", self.max_per_user, 1, MAX_QUEUE_LIMIT, " (MAX_QUEUE_PER_USER)")
        check_int("max_per_guild", self.max_per_guild, 1, MAX_QUEUE_LIMIT, " (MAX_QUEUE_PER_GUILD)")
        check_int("default_duration", self.default_duration, MIN_DURATION, MAX_DURATION, " seconds")
        check_int("disk_budget_bytes", self.disk_budget_bytes, 0, 2**62, " bytes")
        if self.steps is not None:
            check_int("steps", self.steps, 1, 200)
        check_rating(self.lyrics_rating)

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> StationConfig:
        values: dict[str, Any] = {
            "buffer_size": settings.buffer_size,
            "max_per_user": settings.max_queue_per_user,
            "max_per_guild": settings.max_queue_per_guild,
            "default_duration": settings.default_duration,
            "disk_budget_bytes": settings.tracks_disk_budget_mb * 1024**2,
            "adapters_dir": settings.adapters_dir,
            "lyrics_rating": settings.lyrics_rating,
        }
        return cls(**{**values, **changes})


@dataclass(frozen=True)
class RequestReceipt:
    """A queued request and its place in the queue (1 = made next). `cleaned`:
    the station's clean rating took words out of the theme."""

    job: Job
    position: int | None
    cleaned: bool = False


@dataclass(frozen=True)
class StationStatus:
    """Everything `/radio_nowplaying` and `/radio_queue` show."""

    guild_id: int
    state: StationState
    message: str
    now_playing: Play | None
    replaying: bool
    buffered: tuple[TrackRecord, ...]
    queue: tuple[Job, ...]
    making: dict[int, str]
    settings: GuildSettings
    busy_reason: str | None = None
    skipped_missing: int = 0
    notes: tuple[str, ...] = field(default=())


class _StopPlaying(Exception):
    """The play loop was asked to stop while it waited for a track."""


class Station:
    """One guild's radio. See the module docstring."""

    def __init__(self, guild_id: int, store: Store, maker: SongMaker, config: StationConfig):
        self.guild_id = guild_id
        self.store = store
        self.maker = maker
        self.config = config
        self._settings: GuildSettings | None = None
        self._buffer: list[TrackRecord] = []  # the store's buffer, in store order
        self._making: dict[int, str] = {}  # job id -> "writing", "singing 3/8", ...
        self._written: dict[int, list[asyncio.Task]] = {}  # job id -> mark_job_singing calls
        self._changed = asyncio.Event()
        self._fill_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._player: Player | None = None
        self._play_task: asyncio.Task | None = None
        self._stopping = False
        self._closing = False
        self._paused = False
        self._now: Play | None = None
        self._has_played = False
        self._replays = ReplayPicker()
        self._dry = False
        self._audience = True  # someone listens; the Discord side says when nobody does
        self.skipped_missing = 0
        self.adapter_problem: str | None = None  # why the adapter was switched off
        self._job_adapters: dict[int, str | None] = {}  # job id -> the adapter it sings with

    # --- setup ----------------------------------------------------------------
    async def load(self) -> None:
        """Read the settings and the buffer from the store (after `Store.recover`)."""
        self._settings = await self._db(self.store.guild_settings, self.guild_id)
        self._buffer = await self._db(self.store.buffered_tracks, self.guild_id)
        # The rating's word lists, now: a first request should not wait for them.
        await asyncio.to_thread(blocked_words, "", self._settings.language)
        await self.top_up()

    @property
    def settings(self) -> GuildSettings:
        if self._settings is None:
            raise RuntimeError("call load() first")
        return self._settings

    # --- listeners' wishes and the station's style ----------------------------
    async def request(
        self,
        user_id: int,
        user_name: str,
        theme: str,
        *,
        genre: str | None = None,
        length: int | None = None,
    ) -> RequestReceipt:
        """Queue a listener's song. Raises `QueueFullError` past the limits and
        `InvalidValueError` for bad input (each names the field and what is allowed).

        Under a clean rating, words the station does not sing leave the theme
        before it is stored (`RequestReceipt.cleaned`); a theme made only of
        them is refused.
        """
        checked = await asyncio.to_thread(
            check_theme, theme, self.settings.language, self.lyrics_rating
        )
        if checked.cleaned and not checked.theme.strip():
            raise InvalidValueError(
                "theme",
                "(not shown)",
                "a theme this station can sing: its lyrics are rated clean (no drugs, sex, "
                "slurs or self-harm)",
            )
        theme = checked.theme
        job = await self._db(
            lambda: self.store.enqueue_request(
                self.guild_id,
                requester_id=user_id,
                requester_name=user_name,
                theme=theme,
                genre=genre,
                length=length,
                max_per_user=self.config.max_per_user,
                max_per_guild=self.config.max_per_guild,
            )
        )
        position = await self._db(self.store.queue_position, job.id)
        log.info("guild %d: %s asked for %r (job %d)", self.guild_id, user_name, theme, job.id)
        await self.top_up()  # a request may take an auto-fill job's place
        self.maker.wake()
        return RequestReceipt(job, position, checked.cleaned)

    @property
    def lyrics_rating(self) -> str:
        """The station's own rating, else LYRICS_RATING."""
        return self.settings.lyrics_rating or self.config.lyrics_rating

    async def set_lyrics_rating(self, rating: str | None) -> GuildSettings:
        """Set `clean` or `explicit` for this station; None follows LYRICS_RATING again."""
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(self.guild_id, lyrics_rating=rating)
        )
        return self._settings

    async def cancel_request(self, job_id: int, user_id: int) -> Job:
        """Cancel a listener's own queued request."""
        job = await self._db(self.store.get_job, job_id)
        if job.guild_id != self.guild_id or job.requester_id != user_id:
            raise InvalidValueError("job_id", job_id, "the id of one of your own queued requests")
        cancelled = await self._db(self.store.cancel_job, job_id)
        await self.top_up()
        return cancelled

    async def set_style(self, **changes: Any) -> GuildSettings:
        """Change genre, theme, mood, language and/or max_length; clears the preset."""
        unknown = sorted(set(changes) - set(STYLE_KEYS))
        if unknown:
            raise InvalidValueError("style setting", unknown[0], f"one of {', '.join(STYLE_KEYS)}")
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(self.guild_id, preset=None, **changes)
        )
        return self._settings

    async def update_settings(self, **changes: Any) -> GuildSettings:
        """Change the DJ role and the text and voice channels (ids, or None)."""
        unknown = sorted(set(changes) - set(CHANNEL_KEYS))
        if unknown:
            raise InvalidValueError(
                "setting", unknown[0], f"one of {', '.join(CHANNEL_KEYS)} (style: set_style)"
            )
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(self.guild_id, **changes)
        )
        return self._settings

    async def apply_preset(self, name: str) -> GuildSettings:
        preset = PRESETS.get(name.strip().lower()) if isinstance(name, str) else None
        if preset is None:
            raise InvalidValueError("preset", name, f"one of {', '.join(PRESETS)}")
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(
                self.guild_id, genre=preset.genre, mood=preset.mood, preset=preset.name
            )
        )
        return self._settings

    async def set_adapter(self, name: str | None, scale: float | None = None) -> GuildSettings:
        """Sing the next songs with adapter `name` (None: the base model) at `scale`
        (unchanged when None). Songs already made or in the making keep their sound."""
        if name is not None and self.config.adapters_dir is not None:
            found = await asyncio.to_thread(
                require_adapter, self.config.adapters_dir, name, self.guild_id
            )
            name = found.key
        changes: dict[str, Any] = {"adapter": name}
        if scale is not None:
            changes["adapter_scale"] = scale
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(self.guild_id, **changes)
        )
        self.adapter_problem = None
        self._notify()
        return self._settings

    async def set_auto_mode(self, enabled: bool) -> GuildSettings:
        """Auto mode on: keep the buffer full. Off: queued auto-fill jobs are cancelled
        (songs already made still play)."""
        check_bool("auto_mode", enabled)
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(self.guild_id, auto_mode=enabled)
        )
        if not enabled:
            await self._db(self.store.cancel_queued, self.guild_id, kind="auto")
        await self.top_up()
        self._notify()
        return self._settings

    async def set_taste(self, mode: str) -> GuildSettings:
        """`on`: learn the listeners' taste and lean auto songs to it; `off`: write as
        if nothing was learnt (reactions are still recorded); `reset`: forget what was
        learnt so far (favourites stay)."""
        changes: dict[str, Any]
        if mode == "reset":
            changes = {"taste_since": self.store.now()}
        elif mode in ("on", "off"):
            changes = {"taste": mode == "on"}
        else:
            raise InvalidValueError("taste", mode, "on, off or reset")
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(self.guild_id, **changes)
        )
        return self._settings

    async def queue_favorite(self, track_id: int) -> TrackRecord:
        """Put a favourite back in the buffer: it plays next, after listeners' requests."""
        record = await self._db(self.store.requeue_favorite, self.guild_id, track_id)
        self._buffer.insert(0, record)
        self._prepare_next()
        self._notify()
        await self.top_up()
        return record

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
            log.error("guild %d: job %d cannot be sent to the worker: %s", self.guild_id,
                      job.id, exc)  # fmt: skip
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
                log.error("guild %d: cannot record the failure of job %d: %s",
                          self.guild_id, job.id, exc)  # fmt: skip
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
            self.guild_id, record.title, record.duration, record.generation_seconds,
            len(self._buffer),
        )  # fmt: skip
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
            log.error("guild %d: cannot record the failure of job %d: %s",
                      self.guild_id, job.id, exc)  # fmt: skip
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
        log.warning("guild %d: adapter %r switched off: %s", self.guild_id,
                    self.settings.adapter, problem)  # fmt: skip
        try:
            await self.set_adapter(None)
        except StoreError as exc:
            log.error("guild %d: cannot switch the adapter off: %s", self.guild_id, exc)
        self.adapter_problem = problem

    async def add_upload(
        self, track: Track, user_id: int, user_name: str, seconds: float
    ) -> TrackRecord:
        """A listener's own audio file (`/radio_upload`) joins the buffer as their
        request, within the same limits (`QueueFullError`); `seconds` is how long it
        took to check and convert it."""
        limits = (self.config.max_per_user, self.config.max_per_guild)
        record = await self._db(
            lambda: self.store.add_track(self.guild_id, track, generation_seconds=seconds,
                                         uploader=(user_id, user_name), limits=limits)
        )  # fmt: skip
        self._buffer.append(record)
        self._prepare_next()
        self._notify()
        return record

    async def refuse_job(self, job: Job, reason: str) -> None:
        """The worker would not take `job` (unavailable): it fails with `reason`."""
        self._making.pop(job.id, None)
        self._job_adapters.pop(job.id, None)
        await self._db(self.store.fail_job, job.id, reason, max_attempts=1)

    # --- playing --------------------------------------------------------------
    async def start(self, player: Player) -> None:
        """Start playing into `player`; returns at once."""
        if self._play_task is not None and not self._play_task.done():
            raise RuntimeError(f"station {self.guild_id} is already playing")
        self._player = player
        self._stopping = False
        self._paused = False
        # Off air, auto-fill songs may have been pruned for disk space (StationManager).
        self._buffer = await self._db(self.store.buffered_tracks, self.guild_id)
        self._play_task = asyncio.get_running_loop().create_task(self._play_loop())
        await self.top_up()

    async def stop(self) -> None:
        """Stop playing (the current track counts as skipped); the buffer is kept."""
        self._stopping = True
        self._notify()
        if self._player is not None:
            self._player.stop()
        if self._play_task is not None:
            await asyncio.gather(self._play_task, return_exceptions=True)
            self._play_task = None
            await self.top_up()  # off air: withdraw the auto-fill jobs still waiting

    def set_audience(self, listening: bool) -> None:
        """Whether anyone listens (the Discord side counts the voice channel).

        While nobody does the station plays on but queues no auto-fill songs."""
        if listening != self._audience:
            self._audience = listening
            self._spawn(self.top_up())

    def skip(self) -> Play | None:
        """Cut the current track short; the next one starts at once."""
        play = self._now
        if play is not None and self._player is not None:
            self._player.stop()
        return play

    def pause(self) -> None:
        if self._player is not None and not self._paused:
            self._paused = True
            self._player.pause()

    def resume(self) -> None:
        if self._player is not None and self._paused:
            self._paused = False
            self._player.resume()

    @property
    def playing(self) -> bool:
        """True while the play loop runs (even while paused or waiting for a song)."""
        return self._play_task is not None and not self._play_task.done()

    @property
    def buffered(self) -> tuple[TrackRecord, ...]:
        """The finished tracks waiting to play, oldest first (requests play first)."""
        return tuple(self._buffer)

    @property
    def making(self) -> dict[int, str]:
        """Job id -> what the worker is doing with it ("writing", "singing 3/8", ...)."""
        return dict(self._making)

    @property
    def now_playing(self) -> Play | None:
        """The play in progress, or None between tracks and when stopped."""
        return self._now

    async def _play_loop(self) -> None:
        assert self._player is not None
        player = self._player
        previous: tuple[Play, bool] | None = None  # the last play, and whether it was cut
        try:
            while not self._stopping:
                record = self._take_buffered()
                if record is None:
                    if previous is not None:
                        await self._finish(*previous)
                        previous = None
                    try:
                        record = await self._wait_for_track()
                    except _StopPlaying:
                        break
                playing = asyncio.get_running_loop().create_task(player.play(record))
                if previous is not None:
                    await self._finish(*previous)
                    previous = None
                play = await self._start_play(record)
                self._prepare_next()
                try:
                    complete = await playing
                except OSError as exc:
                    log.warning("guild %d: cannot play %s: %s", self.guild_id, record.path, exc)
                    await self._mark_missing()
                    complete = False
                except Exception:
                    log.exception("guild %d: the player failed on %r", self.guild_id, record.title)
                    complete = False
                self._has_played = True
                if play is not None:
                    previous = (play, not complete)
        finally:
            # On shutdown the play stays open: `Store.recover()` puts the track back
            # at the front of the buffer, so it plays again after the restart.
            if previous is not None and not self._closing:
                await self._finish(*previous)
            self._now = None

    def _take_buffered(self) -> TrackRecord | None:
        """The next buffered track: a listener's request first, then the oldest.

        Checks the file (a stat, no reading); a vanished one is dropped here and
        marked missing in the store by `next_track`, with a warning.
        """
        while self._buffer:
            record = self._buffer.pop(self._next_index())
            if record.path.is_file():
                return record
            self.skipped_missing += 1
            self._spawn(self._mark_missing())
        return None

    def _next_index(self) -> int:
        """Where in the buffer the next track is: the first request, else the oldest."""
        return next((i for i, t in enumerate(self._buffer) if t.requester_id), 0)

    def _prepare_next(self) -> None:
        """Tell a player that can open tracks ahead which one comes next."""
        prepare = getattr(self._player, "prepare", None)
        if prepare is not None and self.playing and self._buffer:
            prepare(self._buffer[self._next_index()])

    async def _mark_missing(self) -> None:
        """`next_track` marks every buffered track whose file vanished as missing."""
        await self._db(self.store.next_track, self.guild_id)
        self._notify()
        await self.top_up()

    async def _wait_for_track(self) -> TrackRecord:
        """Wait for a fresh track, replaying the library while no fresh songs are made."""
        loop = asyncio.get_running_loop()
        dry_since: float | None = None
        try:
            while True:
                changed = self._changed
                if self._stopping:
                    raise _StopPlaying
                record = self._take_buffered()
                if record is not None:
                    return record
                if self.maker.busy_reason is not None:
                    replay = await self._pick_replay()
                    if replay is not None:
                        return replay
                elif dry_since is None and self._should_play():
                    dry_since = loop.time()
                    self._dry = True
                    log.warning("guild %d: buffer ran dry", self.guild_id)
                await changed.wait()
        finally:
            self._dry = False
            if dry_since is not None:
                seconds = loop.time() - dry_since
                self._spawn(self._db(self.store.record_underrun, self.guild_id, seconds=seconds))

    def _should_play(self) -> bool:
        """Something should be playing: the station played before and auto mode is on
        or songs are being made for it."""
        if not self._has_played:
            return False
        return (self.settings.auto_mode and self._audience) or bool(self._making)

    async def _pick_replay(self) -> TrackRecord | None:
        """The next library track to replay, favourites first (bot.favorites)."""
        return self._replays.pick(await self._db(self.store.replay_library, self.guild_id))

    async def _start_play(self, record: TrackRecord) -> Play | None:
        try:
            play = await self._db(self.store.start_playing, record.id)
        except StoreError as exc:
            log.error("guild %d: cannot record the play of %d: %s", self.guild_id, record.id, exc)
            return None
        self._now = play
        log.info("guild %d: now playing %r (%s)", self.guild_id, record.title, play.source)
        self._notify()
        # Only now has the track left the store's buffer: the top-up counts it out.
        self._spawn(self.top_up())
        return play

    async def _finish(self, play: Play, skipped: bool) -> None:
        try:
            await self._db(self.store.finish_playing, play.id, skipped=skipped)
        except StoreError as exc:
            log.error("guild %d: cannot finish play %d: %s", self.guild_id, play.id, exc)
        if self._now is not None and self._now.id == play.id:
            self._now = None
        self._notify()

    # --- status ---------------------------------------------------------------
    async def status(self) -> StationStatus:
        """What plays, what is buffered, what is queued and being made, and why."""
        queue = await self._db(self.store.pending_jobs, self.guild_id)
        busy = self.maker.busy_reason
        state: StationState
        if not self.playing:
            state, message = "stopped", "the station is stopped"
        elif self._paused:
            state, message = "paused", "paused"
        elif self._now is None:
            state = "waiting"
            if self._dry:
                message = "the buffer ran dry: waiting for the next song"
            elif busy:
                message = "waiting: the library is empty and no new songs are being made"
            else:
                message = "waiting for the first song"
        else:
            state = "playing"
            message = f"playing {self._now.track.title!r}"
            if self._now.source == "replay":
                message += " (a replay from the library)"
        notes = []
        if self.adapter_problem is not None:
            notes.append(
                f"the adapter was switched off ({self.adapter_problem}): "
                "singing with the base model"
            )
        if busy:
            notes.append(
                f"no new songs right now ({busy}): playing the buffer, then replaying the library"
            )
        return StationStatus(
            guild_id=self.guild_id,
            state=state,
            message=message,
            now_playing=self._now,
            replaying=self._now is not None and self._now.source == "replay",
            buffered=self.buffered,
            queue=tuple(queue),
            making=self.making,
            settings=self.settings,
            busy_reason=busy,
            skipped_missing=self.skipped_missing,
            notes=tuple(notes),
        )

    async def history(self, limit: int = 10) -> list[Play]:
        check_int("limit", limit, 1, MAX_HISTORY)
        return await self._db(self.store.history, self.guild_id, limit)

    async def stats(self) -> StationStats:
        return await self._db(self.store.stats, self.guild_id)

    # --- helpers --------------------------------------------------------------
    def notify(self) -> None:
        """Something outside changed (e.g. the GPU became busy or free): look again."""
        self._notify()

    async def wait_changed(self) -> None:
        """Return at the next change: a track buffered, started or ended, a job ended,
        a setting or the GPU's state changed."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _db(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store call in a thread: the event loop never waits on SQLite."""
        return await asyncio.to_thread(function, *args, **kwargs)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("guild %d: background task failed", self.guild_id, exc_info=task.exception())

    async def close(self) -> None:
        """Shut down: stop playing (the track that was playing is played again after
        the restart) and wait for the station's background work."""
        self._closing = True
        await self.stop()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
