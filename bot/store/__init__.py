"""SQLite persistence of the radio: guild settings, the job queue, tracks, play history,
votes and the events behind `/radio_stats`.

`Store` is synchronous and thread-safe: one connection (`check_same_thread=False`)
guarded by a lock, every public method one transaction. The async station
calls it through `asyncio.to_thread(store.method, ...)` so the event loop never
waits on the disk. Several `Store` objects (or processes) may open the same file:
writes take `BEGIN IMMEDIATE` and wait up to `busy_timeout_ms` for each other.

The database runs in WAL mode with foreign keys on; its schema is versioned in
`bot.store.migrations`. After a restart the bot calls `recover()` once: jobs that were
in flight go back to the queue, the track that was playing goes back to the
front of the buffer, and buffered tracks whose file vanished are marked missing
with a log line. Nothing here imports discord.

Guilds are created explicitly with `ensure_guild()` (when the bot joins or first
hears from one); any other call naming an unknown guild raises `UnknownGuildError`.
The package's parts: `core` (connection), `jobs` (queue), `tracks` (buffer, plays,
disk), `taste` (reactions, the taste's evidence, favourites), `training` (the training
queue and the last runs), `stats` and `reception` (`/radio_stats`), `migrations` (the
schema), `records` (rows as dataclasses), `checks` (value checks and limits, which the
commands share) and `errors`. Code outside the package imports this facade only.
"""

from __future__ import annotations

from typing import Any

from bot.settings import BotSettings
from bot.store.checks import (
    MAX_GENRE_CHARS,
    MAX_HISTORY,
    MAX_MOOD_CHARS,
    MAX_PRESET_CHARS,
    MAX_QUEUE_LIMIT,
    MAX_REASON_CHARS,
    MAX_STATION_THEME_CHARS,
    MAX_THEME_CHARS,
    MIN_STATION_LENGTH,
    check_adapter_name,
    check_adapter_scale,
    check_bool,
    check_id,
    check_int,
    check_language,
    check_optional_id,
    check_rating,
    check_seconds,
    check_text,
)
from bot.store.core import logger
from bot.store.errors import (
    InvalidValueError,
    NotFoundError,
    QueueFullError,
    SchemaError,
    StateError,
    StoreError,
    UnknownGuildError,
)
from bot.store.reception import ReceptionWindow
from bot.store.records import (
    IN_FLIGHT_JOBS,
    GuildSettings,
    Job,
    Play,
    PruneReport,
    RecoveryReport,
    TrackRecord,
    VoteTally,
    job_from_row,
    track_from_row,
)
from bot.store.song_queue import JobStore
from bot.store.stats import RequesterCount, StationStats, compute_stats
from bot.store.taste import Favorite, ReactionTally, TasteStore
from bot.store.training import TrainingRunRow, TrainingRunStore

__all__ = [
    "MAX_GENRE_CHARS",
    "MAX_HISTORY",
    "MAX_MOOD_CHARS",
    "MAX_QUEUE_LIMIT",
    "MAX_STATION_THEME_CHARS",
    "MAX_THEME_CHARS",
    "Favorite",
    "GuildSettings",
    "InvalidValueError",
    "Job",
    "NotFoundError",
    "Play",
    "PruneReport",
    "QueueFullError",
    "ReactionTally",
    "ReceptionWindow",
    "RecoveryReport",
    "RequesterCount",
    "SchemaError",
    "StateError",
    "StationStats",
    "Store",
    "StoreError",
    "TrackRecord",
    "TrainingRunRow",
    "UnknownGuildError",
    "VoteTally",
    "check_adapter_name",
    "check_bool",
    "check_id",
    "check_int",
    "check_rating",
]

SETTING_KEYS = (
    "genre",
    "theme",
    "mood",
    "language",
    "max_length",
    "auto_mode",
    "preset",
    "dj_role_id",
    "text_channel_id",
    "voice_channel_id",
    "adapter",
    "adapter_scale",
    "taste",
    "taste_since",
    "lyrics_rating",
)


class Store(JobStore, TasteStore, TrainingRunStore):
    """The radio's database. See the module docstring for threading and recovery."""

    @classmethod
    def from_settings(cls, settings: BotSettings) -> Store:
        """The store at `DATA_DIR/radio.sqlite3` with the configured limits."""
        return cls(settings.database_path, max_length_max=settings.max_length_max)

    def ensure_guild(self, guild_id: int) -> GuildSettings:
        """The guild's settings, creating them with the defaults on first use."""
        check_id("guild_id", guild_id)
        now = self._now()
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT OR IGNORE INTO guild_settings (guild_id, genre, theme, mood, language,"
                " max_length, auto_mode, created_at, updated_at)"
                " VALUES (?, 'pop', '', '', 'en', ?, 1, ?, ?)",
                (guild_id, self.max_length_max, now, now),
            )
            return self._guild(db, guild_id)

    def guild_ids(self) -> list[int]:
        """Every guild with a station, for start-up."""
        with self._transaction(write=False) as db:
            return [r[0] for r in db.execute("SELECT guild_id FROM guild_settings ORDER BY 1")]

    def guilds_using_adapter(self, key: str) -> list[int]:
        """The guilds whose station sings with adapter `key` (a folder in ADAPTERS_DIR)."""
        check_adapter_name(key)
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT guild_id FROM guild_settings WHERE adapter = ? ORDER BY 1", (key,))
            return [row[0] for row in rows]

    def guild_settings(self, guild_id: int) -> GuildSettings:
        check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            return self._guild(db, guild_id)

    def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings; every key and value is checked before anything is written."""
        check_id("guild_id", guild_id)
        clean = {key: self._check_setting(key, value) for key, value in changes.items()}
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            if clean:
                assignments = ", ".join(f"{key} = ?" for key in clean)
                db.execute(
                    f"UPDATE guild_settings SET {assignments}, updated_at = ? WHERE guild_id = ?",
                    (*clean.values(), self._now(), guild_id),
                )
            return self._guild(db, guild_id)

    def _check_setting(self, key: str, value: Any) -> Any:
        if key == "genre":
            return check_text(key, value, MAX_GENRE_CHARS, required=True)
        if key == "theme":
            return check_text(key, value, MAX_STATION_THEME_CHARS)
        if key == "mood":
            return check_text(key, value, MAX_MOOD_CHARS)
        if key == "language":
            return check_language(value)
        if key == "max_length":
            return check_int(key, value, MIN_STATION_LENGTH, self.max_length_max, " seconds (MAX_LENGTH_MAX)")
        if key in ("auto_mode", "taste"):
            return check_bool(key, value)
        if key == "taste_since":
            return check_seconds(key, value, positive=False)
        if key == "preset":
            return None if value is None else check_text(key, value, MAX_PRESET_CHARS)
        if key in ("dj_role_id", "text_channel_id", "voice_channel_id"):
            return check_optional_id(key, value)
        if key == "adapter":
            return None if value is None else check_adapter_name(value)
        if key == "adapter_scale":
            return check_adapter_scale(value)
        if key == "lyrics_rating":
            return None if value is None else check_rating(value)
        raise InvalidValueError("setting", key, f"one of {', '.join(SETTING_KEYS)}")

    def record_underrun(self, guild_id: int, *, seconds: float | None = None) -> None:
        """The buffer ran dry: listeners heard silence (for `seconds`, if known)."""
        check_id("guild_id", guild_id)
        if seconds is not None:
            seconds = check_seconds("seconds", seconds, positive=False)
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            self._event(db, guild_id, "underrun", seconds=seconds)

    def record_failure(self, guild_id: int, reason: str, *, job_id: int | None = None) -> None:
        """Count a failed attempt that is retried elsewhere (e.g. the worker died and the
        worker client resends the job), leaving the job as it is; `fail_job` is for
        attempts that end the job or send it back to the queue."""
        check_id("guild_id", guild_id)
        reason = check_text("reason", reason, MAX_REASON_CHARS, required=True)
        if job_id is not None:
            check_id("job_id", job_id)
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            self._event(db, guild_id, "failure", reason=reason, job_id=job_id)

    def stats(self, guild_id: int | None = None) -> StationStats:
        """`/radio_stats` figures for one guild, or overall when `guild_id` is None."""
        if guild_id is not None:
            check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            if guild_id is not None:
                self._guild(db, guild_id)
            return compute_stats(db, guild_id)

    def recover(self, *, max_attempts: int = 3) -> RecoveryReport:
        """Bring the state back after a restart; call once at start-up.

        Jobs that were being written or sung go back to the queue at their old
        place, except those already tried `max_attempts` times (they may be what
        kills the process): those fail as "interrupted". The track that was
        playing goes back to the front of its buffer. Buffered tracks whose file
        vanished are marked missing, with a warning each. A replay that was
        playing simply stays in the library.
        """
        check_int("max_attempts", max_attempts, 1, 100)
        now = self._now()
        with self._transaction(write=True) as db:
            requeued, failed = [], []
            rows = db.execute("SELECT * FROM jobs WHERE status IN (?, ?)", IN_FLIGHT_JOBS).fetchall()
            for job in map(job_from_row, rows):
                if job.attempts >= max_attempts:
                    db.execute(
                        "UPDATE jobs SET status = 'failed', failure_reason = 'interrupted',"
                        " finished_at = ? WHERE id = ?",
                        (now, job.id),
                    )
                    self._event(db, job.guild_id, "failure", reason="interrupted", job_id=job.id)
                    failed.append(job.id)
                    logger.warning(
                        "job %d of guild %d interrupted %d times: failed", job.id, job.guild_id, job.attempts
                    )
                else:
                    db.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job.id,))
                    requeued.append(job.id)
                    logger.info("job %d of guild %d was interrupted: back in the queue", job.id, job.guild_id)
            interrupted = [r["id"] for r in db.execute("SELECT id FROM tracks WHERE status = 'playing'")]
            db.execute(
                "UPDATE tracks SET status = CASE WHEN EXISTS (SELECT 1 FROM plays"
                " WHERE plays.track_id = tracks.id AND ended_at IS NULL AND source = 'replay')"
                " THEN 'played' ELSE 'buffered' END WHERE status = 'playing'"
            )
            db.execute(
                "UPDATE plays SET ended_at = ?, outcome = 'interrupted' WHERE ended_at IS NULL",
                (now,),
            )
            rows = db.execute("SELECT * FROM tracks WHERE status = 'buffered' ORDER BY id").fetchall()
            buffered = [track_from_row(row) for row in rows]
            present = {record.id for record in self._drop_vanished(db, buffered)}
            missing = [record.id for record in buffered if record.id not in present]
            return RecoveryReport(requeued, failed, interrupted, missing)
