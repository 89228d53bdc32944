"""Finished tracks: the buffer, playing, history, the replay library, votes, disk budget."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection
from pathlib import Path

from bot.store.checks import (
    MAX_HISTORY,
    MAX_ID,
    MAX_NAME_CHARS,
    check_bool,
    check_id,
    check_int,
    check_seconds,
    check_text,
)
from bot.store.core import StoreCore, logger
from bot.store.errors import InvalidValueError, StateError
from bot.store.records import (
    IN_FLIGHT_JOBS,
    ON_DISK_TRACKS,
    Play,
    PruneReport,
    TrackRecord,
    VoteKind,
    VoteTally,
    track_from_row,
)
from engine.spec import Track


class TrackStore(StoreCore):
    """Tracks from `buffered` to `playing` to `played`, then maybe `pruned` or `missing`."""

    def add_track(
        self,
        guild_id: int,
        track: Track,
        *,
        job_id: int | None = None,
        generation_seconds: float | None = None,
        uploader: tuple[int, str] | None = None,
        limits: tuple[int, int] | None = None,
    ) -> TrackRecord:
        """Put a finished track at the end of the guild's buffer.

        With `job_id`, the job (being written or sung) becomes `done` in the same
        transaction and the track keeps its requester. A listener's own file
        (`/radio_upload`) has no job: `uploader` (user id, name) is its requester.
        `generation_seconds` defaults to the sum of the track's stage timings.
        `limits` (per listener, per guild) apply to an upload as to a request: past
        them it raises `QueueFullError` and the track is not added.
        """
        check_id("guild_id", guild_id)
        if not isinstance(track, Track):
            raise InvalidValueError("track", track, "an engine.spec.Track")
        if job_id is not None:
            check_id("job_id", job_id)
        if uploader is not None:
            if job_id is not None:
                raise InvalidValueError("uploader", uploader, "None for a track made for a job")
            name = check_text("uploader name", uploader[1], MAX_NAME_CHARS, required=True)
            uploader = (check_id("uploader id", uploader[0]), name)
        if generation_seconds is None:
            generation_seconds = sum(track.timings.values())
        seconds = check_seconds("generation_seconds", generation_seconds, positive=True)
        check_seconds("track duration", track.duration, positive=True)
        path = Path(track.path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InvalidValueError("track path", track.path, f"an existing audio file ({exc.strerror})") from exc
        now = self._now()
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            requester_id, requester_name = uploader or (None, None)
            if uploader is not None and limits is not None:
                self._check_room(db, guild_id, uploader[0], uploader[1], *limits)
            if job_id is not None:
                job = self._require_job_status(db, job_id, IN_FLIGHT_JOBS, "finish")
                if job.guild_id != guild_id:
                    raise StateError(f"job {job_id} belongs to guild {job.guild_id}, not {guild_id}")
                requester_id, requester_name = job.requester_id, job.requester_name
                db.execute("UPDATE jobs SET status = 'done', finished_at = ? WHERE id = ?", (now, job_id))
            cursor = db.execute(
                "INSERT INTO tracks (guild_id, job_id, path, track_json, requester_id,"
                " requester_name, duration, generation_seconds, size_bytes, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'buffered', ?)",
                (
                    guild_id,
                    job_id,
                    str(path),
                    track.model_dump_json(),
                    requester_id,
                    requester_name,
                    track.duration,
                    seconds,
                    size,
                    now,
                ),
            )
            return self._track(db, cursor.lastrowid)

    def get_track(self, track_id: int) -> TrackRecord:
        check_id("track_id", track_id)
        with self._transaction(write=False) as db:
            return self._track(db, track_id)

    def buffered_tracks(self, guild_id: int) -> list[TrackRecord]:
        """The buffer, in playing order (no file check; `next_track` does that)."""
        check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            self._guild(db, guild_id)
            rows = db.execute(
                "SELECT * FROM tracks WHERE guild_id = ? AND status = 'buffered' ORDER BY id",
                (guild_id,),
            ).fetchall()
            return [track_from_row(row) for row in rows]

    def next_track(self, guild_id: int) -> TrackRecord | None:
        """The first buffered track whose file is still there.

        Tracks whose file vanished are marked `missing` with a warning and skipped.
        """
        check_id("guild_id", guild_id)
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            rows = db.execute(
                "SELECT * FROM tracks WHERE guild_id = ? AND status = 'buffered' ORDER BY id",
                (guild_id,),
            ).fetchall()
            present = self._drop_vanished(db, [track_from_row(row) for row in rows])
            return present[0] if present else None

    def library(self, guild_id: int, limit: int | None = None) -> list[TrackRecord]:
        """Played tracks whose file still exists (for replay), oldest first.

        Tracks whose file vanished are marked `missing` with a warning.
        """
        check_id("guild_id", guild_id)
        if limit is not None:
            check_int("limit", limit, 1, 10_000)
        with self._transaction(write=True) as db:
            self._guild(db, guild_id)
            rows = db.execute(
                "SELECT * FROM tracks WHERE guild_id = ? AND status = 'played' ORDER BY id",
                (guild_id,),
            ).fetchall()
            present = self._drop_vanished(db, [track_from_row(row) for row in rows])
            return present[:limit] if limit is not None else present

    def _drop_vanished(self, db: sqlite3.Connection, tracks: list[TrackRecord]) -> list[TrackRecord]:
        present = []
        for record in tracks:
            if record.path.is_file():
                present.append(record)
                continue
            logger.warning(
                "track %d (%r) of guild %d: file %s vanished; skipped",
                record.id,
                record.title,
                record.guild_id,
                record.path,
            )
            db.execute("UPDATE tracks SET status = 'missing' WHERE id = ?", (record.id,))
        return present

    def start_playing(self, track_id: int) -> Play:
        """Start a buffered track (a fresh play) or a played one (a replay).

        Only one track plays per guild; a playing track is never pruned.
        """
        check_id("track_id", track_id)
        with self._transaction(write=True) as db:
            record = self._track(db, track_id)
            if record.status not in ("buffered", "played"):
                raise StateError(
                    f"cannot play track {track_id}: it is {record.status}; allowed only when it is buffered or played"
                )
            playing = db.execute(
                "SELECT id FROM tracks WHERE guild_id = ? AND status = 'playing'",
                (record.guild_id,),
            ).fetchone()
            if playing is not None:
                raise StateError(f"guild {record.guild_id} is already playing track {playing['id']}; finish it first")
            # A favourite a DJ put back in the buffer was played before: a replay too.
            played_before = db.execute(
                "SELECT 1 FROM plays WHERE track_id = ? AND outcome IN ('finished', 'skipped')",
                (track_id,),
            ).fetchone()
            source = "fresh" if record.status == "buffered" and not played_before else "replay"
            db.execute("UPDATE tracks SET status = 'playing' WHERE id = ?", (track_id,))
            cursor = db.execute(
                "INSERT INTO plays (guild_id, track_id, source, started_at) VALUES (?, ?, ?, ?)",
                (record.guild_id, track_id, source, self._now()),
            )
            return self._play(db, cursor.lastrowid)

    def finish_playing(self, play_id: int, *, skipped: bool = False) -> Play:
        """The track ended (or was skipped): it joins the library."""
        check_id("play_id", play_id)
        check_bool("skipped", skipped)
        with self._transaction(write=True) as db:
            play = self._open_play(db, play_id, "finish")
            db.execute(
                "UPDATE plays SET ended_at = ?, outcome = ? WHERE id = ?",
                (self._now(), "skipped" if skipped else "finished", play_id),
            )
            db.execute("UPDATE tracks SET status = 'played' WHERE id = ?", (play.track.id,))
            return self._play(db, play_id)

    def now_playing(self, guild_id: int) -> Play | None:
        check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            self._guild(db, guild_id)
            row = db.execute(
                "SELECT id FROM plays WHERE guild_id = ? AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
                (guild_id,),
            ).fetchone()
            return None if row is None else self._play(db, row["id"])

    def history(self, guild_id: int, limit: int = 10) -> list[Play]:
        """The latest plays, newest first."""
        check_id("guild_id", guild_id)
        check_int("limit", limit, 1, MAX_HISTORY)
        with self._transaction(write=False) as db:
            self._guild(db, guild_id)
            rows = db.execute(
                "SELECT id FROM plays WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
                (guild_id, limit),
            ).fetchall()
            return [self._play(db, row["id"]) for row in rows]

    def _open_play(self, db: sqlite3.Connection, play_id: int, action: str) -> Play:
        play = self._play(db, play_id)
        if play.ended_at is not None:
            raise StateError(f"cannot {action} play {play_id}: it ended ({play.outcome})")
        return play

    def record_vote(self, play_id: int, user_id: int, kind: VoteKind = "skip") -> VoteTally:
        """Count a listener's vote on the play in progress; voting twice counts once."""
        check_id("play_id", play_id)
        check_id("user_id", user_id)
        if kind != "skip":
            raise InvalidValueError("vote kind", kind, "skip")
        with self._transaction(write=True) as db:
            self._open_play(db, play_id, "vote on")
            cursor = db.execute(
                "INSERT OR IGNORE INTO votes (play_id, user_id, kind, created_at) VALUES (?, ?, ?, ?)",
                (play_id, user_id, kind, self._now()),
            )
            return VoteTally(count=self._votes(db, play_id, kind), added=cursor.rowcount == 1)

    def vote_count(self, play_id: int, kind: VoteKind = "skip") -> int:
        check_id("play_id", play_id)
        with self._transaction(write=False) as db:
            self._play(db, play_id)
            return self._votes(db, play_id, kind)

    @staticmethod
    def _votes(db: sqlite3.Connection, play_id: int, kind: str) -> int:
        return db.execute("SELECT COUNT(*) FROM votes WHERE play_id = ? AND kind = ?", (play_id, kind)).fetchone()[0]

    def prune_tracks(self, budget_bytes: int, *, on_air: Collection[int] | None = None) -> PruneReport:
        """Delete track files, oldest first, until all of them fit in `budget_bytes`.

        Played tracks (the replay library) go first, favourites last among them. With
        `on_air` (the guilds
        whose station plays now), the station's own buffered songs (auto-fill,
        made again on demand) of the other guilds go next. Listeners' requests and
        uploads waiting to play, and the track playing, are never touched; when
        they alone exceed the budget, the report says so (`over_budget`). Pruned
        tracks stay in the history and the stats with status `pruned`.
        """
        check_int("budget_bytes", budget_bytes, 0, MAX_ID, " bytes")
        with self._transaction(write=True) as db:
            on_disk = ", ".join(f"'{s}'" for s in ON_DISK_TRACKS)
            total = db.execute(
                f"SELECT COALESCE(SUM(size_bytes), 0) FROM tracks WHERE status IN ({on_disk})"
            ).fetchone()[0]
            # Favourites (more 👍 than 👎) go last among played tracks: they are kept longest.
            candidates = db.execute(
                "SELECT id, path, size_bytes FROM tracks WHERE status = 'played' ORDER BY"
                " (SELECT COALESCE(SUM(value), 0) FROM reactions WHERE track_id = tracks.id)"
                " > 0, id"
            ).fetchall()
            if on_air is not None:
                playing = sorted({check_id("guild_id", g) for g in on_air})
                marks = ", ".join("?" * len(playing))
                candidates += db.execute(
                    "SELECT id, path, size_bytes FROM tracks WHERE status = 'buffered'"
                    " AND job_id IS NOT NULL AND requester_id IS NULL"
                    f" AND guild_id NOT IN ({marks}) ORDER BY id",
                    playing,
                ).fetchall()
            pruned: list[int] = []
            freed = 0
            for row in candidates:
                if total <= budget_bytes:
                    break
                try:
                    os.unlink(row["path"])
                except FileNotFoundError:
                    pass  # already gone: nothing to free on disk, but stop counting it
                except OSError as exc:
                    logger.warning("cannot delete track file %s: %s", row["path"], exc)
                    continue
                else:
                    freed += row["size_bytes"]
                db.execute("UPDATE tracks SET status = 'pruned' WHERE id = ?", (row["id"],))
                total -= row["size_bytes"]
                pruned.append(row["id"])
            report = PruneReport(pruned, freed, total, budget_bytes)
        if pruned:
            logger.info("pruned %d track file(s), freed %d bytes", len(pruned), freed)
        if report.over_budget:
            logger.warning(
                "track files take %d bytes, above the budget of %d: all of them listeners' "
                "songs waiting to play or songs of stations on air",
                report.total_bytes,
                budget_bytes,
            )
        return report
