"""The store's connection: opening and migrating the file, transactions, row lookups.

`StoreCore` is the base of the store's parts (`JobStore`, `TrackStore`, `Store`);
only `bot.store.Store` is meant to be used.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from bot.store.checks import MIN_STATION_LENGTH, check_int
from bot.store.errors import (
    NotFoundError,
    QueueFullError,
    SchemaError,
    StateError,
    StoreError,
    UnknownGuildError,
)
from bot.store.migrations import migrate
from bot.store.records import (
    ACTIVE_JOBS,
    GuildSettings,
    Job,
    Play,
    TrackRecord,
    job_from_row,
    settings_from_row,
    track_from_row,
)

logger = logging.getLogger("bot.store")
_S = TypeVar("_S", bound="StoreCore")


class StoreCore:
    """One SQLite connection shared by threads, every use under one lock."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_length_max: int = 300,
        busy_timeout_ms: int = 5000,
        clock: Callable[[], float] = time.time,
    ):
        """Open (creating or upgrading) the database at `path`.

        `max_length_max` is the longest station song length a guild may set
        (`MAX_LENGTH_MAX`); `clock` gives the time stamps (seconds since the epoch).
        Raises `SchemaError` when the file is not a radio database or is newer
        than this program.
        """
        self.path = Path(path)
        self.max_length_max = check_int("max_length_max", max_length_max, MIN_STATION_LENGTH, 600)
        self._clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,  # autocommit: transactions are explicit (see _transaction)
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # In WAL mode NORMAL stays consistent after a crash; only the last
            # commits before a power cut may be lost.
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn, where=str(self.path))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise SchemaError(f"{self.path} cannot be opened as the radio's database: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        if mode.lower() != "wal":
            logger.warning("database %s: WAL mode unavailable, journal mode is %s", self.path, mode)
        self._conn: sqlite3.Connection | None = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite errors come out as `StoreError`."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"the store {self.path} is closed")
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database {self.path}: {exc}") from exc
                raise

    def _now(self) -> float:
        return float(self._clock())

    def _guild(self, db: sqlite3.Connection, guild_id: int) -> GuildSettings:
        """The guild's settings; a stored length limit above today's `MAX_LENGTH_MAX`
        (lowered since it was set) reads as `MAX_LENGTH_MAX`."""
        row = db.execute("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,)).fetchone()
        if row is None:
            raise UnknownGuildError(guild_id)
        settings = settings_from_row(row)
        if settings.max_length > self.max_length_max:
            settings = dataclasses.replace(settings, max_length=self.max_length_max)
        return settings

    @staticmethod
    def _job(db: sqlite3.Connection, job_id: int | None) -> Job:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError("job", job_id or 0)
        return job_from_row(row)

    def _require_job_status(self, db: sqlite3.Connection, job_id: int, allowed: tuple[str, ...], action: str) -> Job:
        job = self._job(db, job_id)
        if job.status not in allowed:
            raise StateError(
                f"cannot {action} job {job_id}: it is {job.status}; allowed only when it is {' or '.join(allowed)}"
            )
        return job

    def _check_room(
        self,
        db: sqlite3.Connection,
        guild_id: int,
        requester_id: int,
        name: str,
        max_per_user: int,
        max_per_guild: int,
    ) -> None:
        """Raise `QueueFullError` unless the listener and the guild may add one more song.

        What counts: requests waiting or being made, and listeners' songs that are
        finished but not played yet (buffered requests and uploads). Otherwise a
        listener could pile up finished songs without end, one slot at a time.
        """
        active = ", ".join(f"'{s}'" for s in ACTIVE_JOBS)
        mine = db.execute(
            f"SELECT (SELECT COUNT(*) FROM jobs WHERE guild_id = ?1 AND requester_id = ?2"
            f" AND status IN ({active}))"
            " + (SELECT COUNT(*) FROM tracks WHERE guild_id = ?1 AND requester_id = ?2"
            " AND status = 'buffered')",
            (guild_id, requester_id),
        ).fetchone()[0]
        if mine >= max_per_user:
            raise QueueFullError(
                "user",
                mine,
                max_per_user,
                f"{name} already has {mine} song(s) waiting, being made or ready to play; "
                f"allowed is at most {max_per_user} per listener",
            )
        everyone = db.execute(
            f"SELECT (SELECT COUNT(*) FROM jobs WHERE guild_id = ?1 AND kind = 'request'"
            f" AND status IN ({active}))"
            " + (SELECT COUNT(*) FROM tracks WHERE guild_id = ?1"
            " AND requester_id IS NOT NULL AND status = 'buffered')",
            (guild_id,),
        ).fetchone()[0]
        if everyone >= max_per_guild:
            raise QueueFullError(
                "guild",
                everyone,
                max_per_guild,
                f"this station already has {everyone} listeners' songs waiting, being made "
                f"or ready to play; allowed is at most {max_per_guild}",
            )

    @staticmethod
    def _track(db: sqlite3.Connection, track_id: int | None) -> TrackRecord:
        row = db.execute("SELECT * FROM tracks WHERE id = ?", (track_id,)).fetchone()
        if row is None:
            raise NotFoundError("track", track_id or 0)
        return track_from_row(row)

    def _play(self, db: sqlite3.Connection, play_id: int | None) -> Play:
        row = db.execute("SELECT * FROM plays WHERE id = ?", (play_id,)).fetchone()
        if row is None:
            raise NotFoundError("play", play_id or 0)
        return Play(
            id=row["id"],
            guild_id=row["guild_id"],
            track=self._track(db, row["track_id"]),
            source=row["source"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            outcome=row["outcome"],
        )

    def _event(
        self,
        db: sqlite3.Connection,
        guild_id: int,
        kind: str,
        *,
        reason: str | None = None,
        job_id: int | None = None,
        seconds: float | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO events (guild_id, kind, reason, job_id, seconds, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (guild_id, kind, reason, job_id, seconds, self._now()),
        )
