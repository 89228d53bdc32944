"""Listeners' reactions (👍/👎) and what is built on them: the taste's evidence,
the favourites, and putting a favourite back in the queue.

A reaction belongs to a track, one per listener (a new press replaces the old
one). Only a track of the same guild that has been played can be reacted to,
kept or put back: the ids arrive from Discord (button custom ids, command
options) and may be forged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from bot.store.checks import check_id, check_int
from bot.store.errors import InvalidValueError, NotFoundError, StateError
from bot.store.records import ON_DISK_TRACKS, TrackRecord, track_from_row
from bot.store.tracks import TrackStore
from bot.taste.profile import WINDOW, PlayEvidence, SongEvidence, TasteProfile, build_profile

MAX_FAVORITES = 100


@dataclass(frozen=True)
class ReactionTally:
    likes: int
    dislikes: int
    #: The listener's reaction before this one (+1, -1), None when it is their first.
    previous: int | None = None


@dataclass(frozen=True)
class Favorite:
    """A song listeners liked (more 👍 than 👎)."""

    record: TrackRecord
    likes: int
    dislikes: int


class TasteStore(TrackStore):
    """Reactions, the taste's evidence and the favourites."""

    def react(self, guild_id: int, track_id: int, user_id: int, value: int) -> ReactionTally:
        """Record `user_id`'s 👍 (+1) or 👎 (-1) on a played track of the guild."""
        check_id("guild_id", guild_id)
        check_id("user_id", user_id)
        if value not in (1, -1) or isinstance(value, bool):
            raise InvalidValueError("reaction", value, "1 (like) or -1 (dislike)")
        with self._transaction(write=True) as db:
            self._played_track(db, guild_id, track_id)
            row = db.execute(
                "SELECT value FROM reactions WHERE track_id = ? AND user_id = ?",
                (track_id, user_id),
            ).fetchone()
            db.execute(
                "INSERT INTO reactions (track_id, guild_id, user_id, value, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (track_id, user_id)"
                " DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                (track_id, guild_id, user_id, value, self._now()),
            )
            likes, dislikes = self._tally(db, track_id)
            return ReactionTally(likes, dislikes, None if row is None else row["value"])

    def reaction_tally(self, track_id: int) -> ReactionTally:
        check_id("track_id", track_id)
        with self._transaction(write=False) as db:
            return ReactionTally(*self._tally(db, track_id))

    @staticmethod
    def _tally(db: sqlite3.Connection, track_id: int) -> tuple[int, int]:
        row = db.execute(
            "SELECT COALESCE(SUM(value = 1), 0), COALESCE(SUM(value = -1), 0) FROM reactions WHERE track_id = ?",
            (track_id,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def played_track(self, guild_id: int, track_id: int) -> TrackRecord:
        """A track of the guild that has been played (or plays now), with its file there.

        Raises `NotFoundError` for another guild's track or an unknown id, and
        `StateError` when it has not been played yet or its file is gone.
        """
        check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            record = self._played_track(db, guild_id, track_id)
        if record.status not in ON_DISK_TRACKS or not record.path.is_file():
            raise StateError(
                f"the file of {record.title!r} is gone (old songs are deleted to keep the "
                "disk budget): it cannot be sent any more"
            )
        return record

    def _played_track(self, db: sqlite3.Connection, guild_id: int, track_id: int) -> TrackRecord:
        check_id("track_id", track_id)
        row = db.execute("SELECT * FROM tracks WHERE id = ? AND guild_id = ?", (track_id, guild_id)).fetchone()
        if row is None:
            raise NotFoundError("song", track_id, "not a song of this server")
        played = db.execute("SELECT 1 FROM plays WHERE track_id = ? LIMIT 1", (track_id,))
        if played.fetchone() is None:
            raise StateError(f"song {track_id} has not been played here yet")
        return track_from_row(row)

    # --- the taste ------------------------------------------------------------
    def now(self) -> float:
        """The store's clock, seconds since the epoch (what a taste reset is stamped with)."""
        return self._now()

    def taste_evidence(self, guild_id: int, since: float = 0.0) -> list[SongEvidence]:
        """The reception of the guild's latest songs (at most `WINDOW`), newest first:
        reactions, plays and requests from `since` on. Uploads are not counted."""
        check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            self._guild(db, guild_id)
            rows = db.execute(
                """
                SELECT t.*, j.kind AS job_kind FROM tracks AS t JOIN jobs AS j ON j.id = t.job_id
                 WHERE t.guild_id = ? AND (
                       EXISTS (SELECT 1 FROM plays AS p WHERE p.track_id = t.id
                                  AND p.started_at >= ?)
                    OR EXISTS (SELECT 1 FROM reactions AS r WHERE r.track_id = t.id
                                  AND r.created_at >= ?)
                    OR (j.kind = 'request' AND t.created_at >= ?))
                 ORDER BY t.id DESC LIMIT ?
                """,
                (guild_id, since, since, since, WINDOW),
            ).fetchall()
            return [self._evidence(db, row, since) for row in rows]

    def _evidence(self, db: sqlite3.Connection, row: sqlite3.Row, since: float) -> SongEvidence:
        record = track_from_row(row)
        plays = db.execute(
            "SELECT source, outcome, started_at, ended_at FROM plays"
            " WHERE track_id = ? AND started_at >= ? ORDER BY id",
            (record.id, since),
        ).fetchall()
        likes, dislikes, reacted = db.execute(
            "SELECT COALESCE(SUM(value = 1), 0), COALESCE(SUM(value = -1), 0), MAX(created_at)"
            " FROM reactions WHERE track_id = ? AND created_at >= ?",
            (record.id, since),
        ).fetchone()
        times = [record.created_at, reacted or 0.0]
        times += [p["ended_at"] or p["started_at"] for p in plays]
        adapter = record.track.settings.get("adapter")
        return SongEvidence(
            track_id=record.id,
            spec=record.spec,
            duration=record.duration,
            adapter=adapter if isinstance(adapter, str) else None,
            requested=row["job_kind"] == "request" and record.created_at >= since,
            likes=int(likes),
            dislikes=int(dislikes),
            plays=tuple(
                PlayEvidence(
                    p["source"],
                    p["outcome"],
                    max(0.0, (p["ended_at"] or p["started_at"]) - p["started_at"]),
                )
                for p in plays
            ),
            at=max(times),
        )

    def taste_profile(self, guild_id: int) -> TasteProfile:
        """The guild's taste, from the evidence since its last reset."""
        check_id("guild_id", guild_id)
        with self._transaction(write=False) as db:
            since = self._guild(db, guild_id).taste_since
        evidence = self.taste_evidence(guild_id, since=since)
        return build_profile(evidence, self._now())

    # --- favourites -----------------------------------------------------------
    def favorites(self, guild_id: int, limit: int = 25) -> list[Favorite]:
        """Songs with more 👍 than 👎 whose file is kept, most liked first."""
        check_id("guild_id", guild_id)
        check_int("limit", limit, 1, MAX_FAVORITES)
        on_disk = ", ".join(f"'{s}'" for s in ON_DISK_TRACKS)
        with self._transaction(write=False) as db:
            self._guild(db, guild_id)
            rows = db.execute(
                f"""
                SELECT t.*, SUM(r.value = 1) AS likes, SUM(r.value = -1) AS dislikes
                  FROM tracks AS t JOIN reactions AS r ON r.track_id = t.id
                 WHERE t.guild_id = ? AND t.status IN ({on_disk})
                 GROUP BY t.id HAVING SUM(r.value) > 0
                 ORDER BY SUM(r.value) DESC, t.id DESC LIMIT ?
                """,
                (guild_id, limit),
            ).fetchall()
            return [Favorite(track_from_row(r), r["likes"], r["dislikes"]) for r in rows]

    def replay_library(self, guild_id: int) -> list[tuple[TrackRecord, int]]:
        """The replay library (`library`) with each song's 👍 minus 👎."""
        library = self.library(guild_id)
        with self._transaction(write=False) as db:
            tallies = [self._tally(db, record.id) for record in library]
        return [(record, likes - dislikes) for record, (likes, dislikes) in zip(library, tallies, strict=True)]

    def requeue_favorite(self, guild_id: int, track_id: int) -> TrackRecord:
        """Put a favourite back in the guild's buffer (it plays next, after requests)."""
        check_id("guild_id", guild_id)
        with self._transaction(write=True) as db:
            record = self._played_track(db, guild_id, track_id)
            likes, dislikes = self._tally(db, track_id)
            if likes <= dislikes:
                raise StateError(f"{record.title!r} is not a favourite (more 👍 than 👎)")
            if record.status != "played":
                why = {"buffered": "it is in the queue already", "playing": "it is playing now"}
                raise StateError(
                    f"{record.title!r} cannot go back in the queue: {why.get(record.status, 'its file is gone')}"
                )
            if not record.path.is_file():
                raise StateError(f"{record.title!r} cannot go back in the queue: its file is gone")
            db.execute("UPDATE tracks SET status = 'buffered' WHERE id = ?", (track_id,))
            return self._track(db, track_id)
