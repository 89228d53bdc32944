"""What `/radio_stats` shows, computed from the store's tables.

Definitions (the tests check them against hand-computed values):

- songs generated: every track the engine finished, whatever became of it
  later (played, pruned, missing);
- generation time percentiles: linear interpolation between the closest ranks
  (numpy's default): for sorted values v[0..n-1], percentile q sits at
  position (n - 1) * q / 100;
- real-time factor of a song: seconds of audio / seconds it took to generate,
  so 5.0 means five times faster than real time; the figure shown is the mean
  over songs;
- failures by reason: every failed attempt, including ones that were retried;
- top requesters: songs generated for a listener's requests;
- reception: like ratio and skip rate of the latest plays, in windows of 20
  (bot.store.reception).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.store.reception import ReceptionWindow, compute_reception

TOP_REQUESTERS = 5


@dataclass(frozen=True)
class RequesterCount:
    user_id: int
    name: str
    songs: int


@dataclass(frozen=True)
class StationStats:
    """Figures for one guild, or for every guild when `guild_id` is None."""

    guild_id: int | None
    songs_generated: int
    songs_played: int
    audio_seconds: float
    generation_p50: float | None
    generation_p90: float | None
    generation_p99: float | None
    mean_real_time_factor: float | None
    underruns: int
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    top_requesters: list[RequesterCount] = field(default_factory=list)
    reception: tuple[ReceptionWindow, ...] = ()  # newest first


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0 to 100) by linear interpolation; None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be from 0 to 100, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def compute_stats(conn: sqlite3.Connection, guild_id: int | None) -> StationStats:
    """Read the figures in one pass over the tables; call inside a read transaction."""
    where, args = ("WHERE guild_id = ?", (guild_id,)) if guild_id is not None else ("", ())
    also = "AND guild_id = ?" if guild_id is not None else ""

    rows = conn.execute(f"SELECT duration, generation_seconds FROM tracks {where}", args).fetchall()
    generation = [row["generation_seconds"] for row in rows]
    factors = [row["duration"] / row["generation_seconds"] for row in rows]

    played = conn.execute(f"SELECT COUNT(*) FROM plays {where}", args).fetchone()[0]
    underruns = conn.execute(f"SELECT COUNT(*) FROM events WHERE kind = 'underrun' {also}", args).fetchone()[0]
    failures = conn.execute(
        f"SELECT reason, COUNT(*) AS n FROM events WHERE kind = 'failure' {also} "
        "GROUP BY reason ORDER BY n DESC, reason",
        args,
    ).fetchall()
    # The name shown is the one of the requester's latest song (names change), in the
    # same guild: a member's nickname in one server is not shown in another.
    same_guild = "AND t2.guild_id = t.guild_id" if guild_id is not None else ""
    requesters = conn.execute(
        f"""
        SELECT requester_id, COUNT(*) AS n,
               (SELECT t2.requester_name FROM tracks AS t2
                 WHERE t2.requester_id = t.requester_id {same_guild}
                 ORDER BY t2.id DESC LIMIT 1) AS name
          FROM tracks AS t
         WHERE requester_id IS NOT NULL {also}
         GROUP BY requester_id ORDER BY n DESC, MIN(id) LIMIT ?
        """,
        (*args, TOP_REQUESTERS),
    ).fetchall()

    return StationStats(
        guild_id=guild_id,
        songs_generated=len(rows),
        songs_played=played,
        audio_seconds=float(sum(row["duration"] for row in rows)),
        generation_p50=percentile(generation, 50),
        generation_p90=percentile(generation, 90),
        generation_p99=percentile(generation, 99),
        mean_real_time_factor=sum(factors) / len(factors) if factors else None,
        underruns=underruns,
        failures_by_reason={row["reason"]: row["n"] for row in failures},
        top_requesters=[
            RequesterCount(user_id=row["requester_id"], name=row["name"] or "", songs=row["n"]) for row in requesters
        ],
        reception=compute_reception(conn, guild_id),
    )
