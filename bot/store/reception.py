"""How listeners received the songs over time, for `/radio_stats`: like ratio and skip rate.

The plays that ended (played to the end or skipped) are taken newest first
in windows of `WINDOW_SONGS`, up to `WINDOWS` of them, so a DJ can see
whether the last songs did better than the ones before:

- skip rate: skipped plays / plays that ended in the window;
- like ratio: 👍 / (👍 + 👎) on the window's songs (each song once, however
  often it played), None without reactions.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

WINDOW_SONGS = 20
WINDOWS = 4


@dataclass(frozen=True)
class ReceptionWindow:
    plays: int
    skipped: int
    likes: int
    dislikes: int

    @property
    def skip_rate(self) -> float:
        return self.skipped / self.plays if self.plays else 0.0

    @property
    def like_ratio(self) -> float | None:
        votes = self.likes + self.dislikes
        return self.likes / votes if votes else None


def compute_reception(conn: sqlite3.Connection, guild_id: int | None) -> tuple[ReceptionWindow, ...]:
    """The windows, newest first; call inside a read transaction."""
    where, args = ("AND guild_id = ?", (guild_id,)) if guild_id is not None else ("", ())
    plays = conn.execute(
        f"SELECT track_id, outcome FROM plays WHERE outcome IN ('finished', 'skipped') {where}"
        " ORDER BY id DESC LIMIT ?",
        (*args, WINDOW_SONGS * WINDOWS),
    ).fetchall()
    windows = []
    for start in range(0, len(plays), WINDOW_SONGS):
        chunk = plays[start : start + WINDOW_SONGS]
        tracks = sorted({row["track_id"] for row in chunk})
        marks = ", ".join("?" * len(tracks))
        likes, dislikes = conn.execute(
            "SELECT COALESCE(SUM(value = 1), 0), COALESCE(SUM(value = -1), 0) FROM reactions"
            f" WHERE track_id IN ({marks})",
            tracks,
        ).fetchone()
        skipped = sum(row["outcome"] == "skipped" for row in chunk)
        windows.append(ReceptionWindow(len(chunk), skipped, int(likes), int(dislikes)))
    return tuple(windows)
