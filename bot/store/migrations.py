"""The database schema, as an ordered list of migrations kept in code.

The schema version lives in SQLite's `PRAGMA user_version`. Opening a database
applies every migration above its version, each in its own transaction
together with the version bump, so a failed migration leaves the file exactly
as it was. A database written by a newer program (a higher version than the
last one here) is refused rather than guessed at.

Never edit a migration that has shipped: append a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from bot.store.errors import SchemaError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "guild settings, job queue, tracks, play history, votes",
        """
        CREATE TABLE guild_settings (
            guild_id INTEGER PRIMARY KEY,
            genre TEXT NOT NULL,
            theme TEXT NOT NULL,
            mood TEXT NOT NULL,
            language TEXT NOT NULL,
            max_length INTEGER NOT NULL,
            auto_mode INTEGER NOT NULL CHECK (auto_mode IN (0, 1)),
            preset TEXT,
            dj_role_id INTEGER,
            text_channel_id INTEGER,
            voice_channel_id INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );

        -- fair_round: the round-robin round of a request (see Store.enqueue_request).
        -- spec_json: the SongSpec once written, so a retry can skip the songwriter.
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL REFERENCES guild_settings (guild_id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('request', 'auto')),
            requester_id INTEGER,
            requester_name TEXT,
            theme TEXT NOT NULL,
            genre TEXT,
            length INTEGER,
            status TEXT NOT NULL
                CHECK (status IN ('queued', 'writing', 'singing', 'done', 'failed', 'cancelled')),
            fair_round INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            failure_reason TEXT,
            spec_json TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            CHECK ((kind = 'request') = (requester_id IS NOT NULL))
        );
        CREATE INDEX jobs_queue ON jobs (guild_id, status, kind, fair_round, id);
        CREATE INDEX jobs_by_requester ON jobs (guild_id, requester_id, status);

        -- track_json: the whole engine.spec.Track (spec, timings, seed, settings) as JSON.
        CREATE TABLE tracks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL REFERENCES guild_settings (guild_id) ON DELETE CASCADE,
            job_id INTEGER UNIQUE REFERENCES jobs (id) ON DELETE SET NULL,
            path TEXT NOT NULL,
            track_json TEXT NOT NULL,
            requester_id INTEGER,
            requester_name TEXT,
            duration REAL NOT NULL,
            generation_seconds REAL NOT NULL CHECK (generation_seconds > 0),
            size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
            status TEXT NOT NULL
                CHECK (status IN ('buffered', 'playing', 'played', 'missing', 'pruned')),
            created_at REAL NOT NULL
        );
        CREATE INDEX tracks_by_status ON tracks (guild_id, status, id);
        CREATE UNIQUE INDEX tracks_one_playing_per_guild ON tracks (guild_id)
            WHERE status = 'playing';

        CREATE TABLE plays (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL REFERENCES guild_settings (guild_id) ON DELETE CASCADE,
            track_id INTEGER NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
            source TEXT NOT NULL CHECK (source IN ('fresh', 'replay')),
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT CHECK (outcome IN ('finished', 'skipped', 'interrupted'))
        );
        CREATE INDEX plays_by_guild ON plays (guild_id, id);

        CREATE TABLE votes (
            play_id INTEGER NOT NULL REFERENCES plays (id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('skip')),
            created_at REAL NOT NULL,
            PRIMARY KEY (play_id, user_id, kind)
        );
        """,
    ),
    Migration(
        2,
        "events for /radio_stats: buffer underruns and failures by reason",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL REFERENCES guild_settings (guild_id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('underrun', 'failure')),
            reason TEXT,
            job_id INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
            seconds REAL,
            created_at REAL NOT NULL
        );
        CREATE INDEX events_by_guild ON events (guild_id, kind);
        """,
    ),
    Migration(
        3,
        "the station's adapter (a folder name in ADAPTERS_DIR) and its scale",
        """
        ALTER TABLE guild_settings ADD COLUMN adapter TEXT;
        ALTER TABLE guild_settings ADD COLUMN adapter_scale REAL NOT NULL DEFAULT 1.0
            CHECK (adapter_scale BETWEEN 0 AND 4);
        """,
    ),
    Migration(
        4,
        "listeners' taste: 👍/👎 reactions per song, the taste switch and its reset time",
        """
        -- One reaction per listener per track: +1 (👍) or -1 (👎); a new press replaces it.
        CREATE TABLE reactions (
            track_id INTEGER NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
            guild_id INTEGER NOT NULL REFERENCES guild_settings (guild_id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL,
            value INTEGER NOT NULL CHECK (value IN (-1, 1)),
            created_at REAL NOT NULL,
            PRIMARY KEY (track_id, user_id)
        );
        CREATE INDEX reactions_by_guild ON reactions (guild_id, created_at);
        CREATE INDEX plays_by_track ON plays (track_id);
        -- taste: learn from reactions and lean auto songs to it; taste_since: evidence
        -- older than this (a reset) is not counted.
        ALTER TABLE guild_settings ADD COLUMN taste INTEGER NOT NULL DEFAULT 1
            CHECK (taste IN (0, 1));
        ALTER TABLE guild_settings ADD COLUMN taste_since REAL NOT NULL DEFAULT 0;
        """,
    ),
    Migration(
        5,
        "the station's lyrics rating (NULL: LYRICS_RATING from .env)",
        """
        ALTER TABLE guild_settings ADD COLUMN lyrics_rating TEXT
            CHECK (lyrics_rating IN ('clean', 'explicit'));
        """,
    ),
    Migration(
        6,
        "training runs: the queue of /radio_train and the last runs, kept across restarts",
        """
        -- kind: 'train' (an adapter) or 'preprocess' (a dataset's tensors only).
        -- name: the adapter's name; adapter: the key it was exported under.
        CREATE TABLE training_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            guild_id INTEGER NOT NULL,
            channel_id INTEGER,
            user_id INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('train', 'preprocess')),
            dataset TEXT NOT NULL,
            name TEXT NOT NULL,
            preset TEXT,
            epochs INTEGER NOT NULL DEFAULT 0,
            preview_every INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL
                CHECK (state IN ('queued', 'running', 'done', 'stopped', 'failed', 'cancelled')),
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER,
            epoch INTEGER NOT NULL DEFAULT 0,
            loss REAL,
            adapter TEXT,
            message TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            started_at REAL,
            ended_at REAL
        );
        CREATE INDEX training_runs_by_state ON training_runs (state, id);
        CREATE INDEX training_runs_by_guild ON training_runs (guild_id, id);
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, *, where: str = "") -> list[int]:
    """Bring the database up to the last of `migrations`; return the versions applied.

    `conn` must be in autocommit mode (`isolation_level=None`): each migration
    runs in an explicit `BEGIN IMMEDIATE ... COMMIT` that also sets
    `user_version`, and is rolled back as a whole if any statement fails.
    `where` names the file in error messages.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"migration versions must be increasing and >= 1, got {versions}")
    known = versions[-1] if versions else 0
    current = schema_version(conn)
    if current > known:
        raise SchemaError(
            f"database {where or '(in memory)'} has schema version {current}, but this "
            f"program knows versions up to {known}: it was written by a newer version of "
            "the radio. Run that version, or point DATA_DIR at another folder."
        )
    applied = []
    for migration in migrations:
        if migration.version <= current:
            continue
        try:
            # executescript() commits any open transaction first, so BEGIN and
            # COMMIT are part of the script; on error the transaction is still
            # open and is rolled back below.
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{migration.sql}\nPRAGMA user_version = {migration.version};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SchemaError(
                f"migration {migration.version} ({migration.description}) of database "
                f"{where or '(in memory)'} failed: {exc}; the database was left at "
                f"version {schema_version(conn)}"
            ) from exc
        applied.append(migration.version)
    return applied
