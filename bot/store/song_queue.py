"""The job queue: requests in fair round-robin order, before auto-fill."""

from __future__ import annotations

import sqlite3

from bot.store.checks import (
    MAX_GENRE_CHARS,
    MAX_NAME_CHARS,
    MAX_QUEUE_LIMIT,
    MAX_REASON_CHARS,
    MAX_THEME_CHARS,
    check_id,
    check_int,
    check_text,
)
from bot.store.core import StoreCore
from bot.store.errors import InvalidValueError
from bot.store.records import IN_FLIGHT_JOBS, Job, JobKind, job_from_row
from engine.spec import MIN_DURATION, SongSpec

DEFAULT_MAX_ATTEMPTS = 2  # the first try and one retry, as DESIGN.md asks
# Requests before auto-fill; requests in round-robin rounds, then in arrival order.
_QUEUE_ORDER = "CASE kind WHEN 'request' THEN 0 ELSE 1 END, fair_round, id"


class JobStore(StoreCore):
    """Jobs from `queued` through `writing` and `singing` to `done`, `failed` or `cancelled`."""

    def enqueue_request(
        self,
        guild_id: int,
        *,
        requester_id: int,
        requester_name: str,
        theme: str,
        max_per_user: int,
        max_per_guild: int,
        genre: str | None = None,
        length: int | None = None,
    ) -> Job:
        """Queue a listener's request, in fair round-robin order between listeners.

        Each request gets a round: a listener's first waiting request joins the
        round being served now, each further one the round after their previous
        one. The queue runs round by round, in arrival order within a round, so
        A, A, A, B, C, C queued in that order play as A B C A C A, and someone
        who just asked is not stuck behind a listener who queued ten songs.
        Raises `QueueFullError` when the listener already has `max_per_user`
        requests waiting, in the making or finished but not played yet, or the
        guild `max_per_guild` (see `_check_room`).
        """
        check_id("guild_id", guild_id)
        check_id("requester_id", requester_id)
        name = check_text("requester_name", requester_name, MAX_NAME_CHARS, required=True)
        theme = check_text("theme", theme, MAX_THEME_CHARS, required=True)
        genre = None if genre is None else check_text("genre", genre, MAX_GENRE_CHARS)
        check_int("max_per_user", max_per_user, 1, MAX_QUEUE_LIMIT)
        check_int("max_per_guild", max_per_guild, 1, MAX_QUEUE_LIMIT)
        with self._transaction(write=True) as db:
            length = self._check_length(db, guild_id, length)
            self._check_room(db, guild_id, requester_id, name, max_per_user, max_per_guild)
            # Rounds served so far only grow: the queue is taken in round order.
            served = db.execute(
                "SELECT COALESCE(MAX(fair_round), 0) FROM jobs WHERE guild_id = ?"
                " AND kind = 'request' AND started_at IS NOT NULL",
                (guild_id,),
            ).fetchone()[0]
            previous = db.execute(
                "SELECT MAX(fair_round) FROM jobs WHERE guild_id = ? AND requester_id = ? AND status != 'cancelled'",
                (guild_id, requester_id),
            ).fetchone()[0]
            fair_round = served if previous is None else max(served, previous + 1)
            return self._insert_job(db, guild_id, "request", requester_id, name, theme, genre, length, fair_round)

    def enqueue_auto(
        self, guild_id: int, *, theme: str = "", genre: str | None = None, length: int | None = None
    ) -> Job:
        """Queue an auto-fill song; it runs only when no request is waiting."""
        check_id("guild_id", guild_id)
        theme = check_text("theme", theme, MAX_THEME_CHARS)
        genre = None if genre is None else check_text("genre", genre, MAX_GENRE_CHARS)
        with self._transaction(write=True) as db:
            length = self._check_length(db, guild_id, length)
            return self._insert_job(db, guild_id, "auto", None, None, theme, genre, length, 0)

    def _check_length(self, db: sqlite3.Connection, guild_id: int, length: int | None) -> int | None:
        limit = self._guild(db, guild_id).max_length
        if length is None:
            return None
        return check_int("length", length, MIN_DURATION, limit, " seconds (this station's limit)")

    def _insert_job(
        self,
        db: sqlite3.Connection,
        guild_id: int,
        kind: JobKind,
        requester_id: int | None,
        requester_name: str | None,
        theme: str,
        genre: str | None,
        length: int | None,
        fair_round: int,
    ) -> Job:
        cursor = db.execute(
            "INSERT INTO jobs (guild_id, kind, requester_id, requester_name, theme, genre, length,"
            " status, fair_round, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
            (guild_id, kind, requester_id, requester_name, theme, genre, length, fair_round, self._now()),
        )
        return self._job(db, cursor.lastrowid)

    def next_job(self, guild_id: int) -> Job | None:
        """Take the next queued job (requests first, round-robin), now `writing`.

        Counts the attempt and stamps `started_at`; None when the queue is empty.
        """
        check_id("guild_id", guild_id)
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            row = db.execute(
                f"SELECT id FROM jobs WHERE guild_id = ? AND status = 'queued' ORDER BY {_QUEUE_ORDER} LIMIT 1",
                (guild_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'writing', attempts = attempts + 1, started_at = ? WHERE id = ?",
                (self._now(), row["id"]),
            )
            return self._job(db, row["id"])

    def queued_kinds(self) -> dict[int, JobKind]:
        """For every guild with queued jobs, the kind of the one it would run next (a
        request whenever one waits): one query for the scheduler, however many guilds."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT guild_id, MIN(CASE kind WHEN 'request' THEN 0 ELSE 1 END) AS auto"
                " FROM jobs WHERE status = 'queued' GROUP BY guild_id"
            ).fetchall()
        return {row["guild_id"]: "auto" if row["auto"] else "request" for row in rows}

    def get_job(self, job_id: int) -> Job:
        check_id("job_id", job_id)
        with self._transaction(write=False) as db:
            return self._job(db, job_id)

    def pending_jobs(self, guild_id: int) -> list[Job]:
        """Jobs being made (oldest first), then queued ones in the order they will run."""
        check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            self._guild(db, guild_id)
            rows = db.execute(
                "SELECT * FROM jobs WHERE guild_id = ? AND status IN ('writing', 'singing') ORDER BY started_at, id",
                (guild_id,),
            ).fetchall()
            rows += db.execute(
                f"SELECT * FROM jobs WHERE guild_id = ? AND status = 'queued' ORDER BY {_QUEUE_ORDER}",
                (guild_id,),
            ).fetchall()
            return [job_from_row(row) for row in rows]

    def queue_position(self, job_id: int) -> int | None:
        """1 for the job that runs next, 2 after it, ...; None when it is not queued."""
        check_id("job_id", job_id)
        with self._transaction(write=False) as db:
            job = self._job(db, job_id)
            if job.status != "queued":
                return None
            ids = db.execute(
                f"SELECT id FROM jobs WHERE guild_id = ? AND status = 'queued' ORDER BY {_QUEUE_ORDER}",
                (job.guild_id,),
            ).fetchall()
            return [row["id"] for row in ids].index(job_id) + 1

    def mark_job_singing(self, job_id: int, spec: SongSpec) -> Job:
        """The songwriter is done: keep its spec (a retry can reuse it) and move on."""
        check_id("job_id", job_id)
        if not isinstance(spec, SongSpec):
            raise InvalidValueError("spec", spec, "an engine.spec.SongSpec")
        with self._transaction(write=True) as db:
            self._require_job_status(db, job_id, ("writing",), "start singing")
            db.execute(
                "UPDATE jobs SET status = 'singing', spec_json = ? WHERE id = ?",
                (spec.model_dump_json(), job_id),
            )
            return self._job(db, job_id)

    def fail_job(self, job_id: int, reason: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Job:
        """Record a failed attempt; requeue the job (at its old place) while attempts remain.

        `reason` is a short category ("oom", "worker_died", ...): `/radio_stats`
        counts failures by it. With `max_attempts=1` the job fails at once.
        """
        check_id("job_id", job_id)
        reason = check_text("reason", reason, MAX_REASON_CHARS, required=True)
        check_int("max_attempts", max_attempts, 1, 100)
        now = self._now()
        with self._transaction(write=True) as db:
            job = self._require_job_status(db, job_id, IN_FLIGHT_JOBS, "fail")
            if job.attempts < max_attempts:
                db.execute(
                    "UPDATE jobs SET status = 'queued', failure_reason = ? WHERE id = ?",
                    (reason, job_id),
                )
            else:
                db.execute(
                    "UPDATE jobs SET status = 'failed', failure_reason = ?, finished_at = ? WHERE id = ?",
                    (reason, now, job_id),
                )
            self._event(db, job.guild_id, "failure", reason=reason, job_id=job_id)
            return self._job(db, job_id)

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a queued job. A job being made cannot be cancelled: it will finish."""
        check_id("job_id", job_id)
        with self._transaction(write=True) as db:
            self._require_job_status(db, job_id, ("queued",), "cancel")
            db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?",
                (self._now(), job_id),
            )
            return self._job(db, job_id)

    def cancel_queued(self, guild_id: int, *, kind: JobKind | None = None) -> int:
        """Cancel every queued job of the guild (of one kind if given); return how many."""
        check_id("guild_id", guild_id)
        if kind not in (None, "request", "auto"):
            raise InvalidValueError("kind", kind, "request, auto or None (both)")
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            cursor = db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?"
                " WHERE guild_id = ? AND status = 'queued' AND (? IS NULL OR kind = ?)",
                (self._now(), guild_id, kind, kind),
            )
            return cursor.rowcount
