"""The plain records the store hands out, and how table rows become them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

from engine.spec import SongSpec, StationStyle, Track

JobKind = Literal["request", "auto"]
JobStatus = Literal["queued", "writing", "singing", "done", "failed", "cancelled"]
TrackStatus = Literal["buffered", "playing", "played", "missing", "pruned"]
PlaySource = Literal["fresh", "replay"]
PlayOutcome = Literal["finished", "skipped", "interrupted"]
VoteKind = Literal["skip"]

IN_FLIGHT_JOBS = ("writing", "singing")
ACTIVE_JOBS = ("queued", "writing", "singing")
#: Tracks whose file is (or should be) on disk and counts against the budget.
ON_DISK_TRACKS = ("buffered", "playing", "played")


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    genre: str
    theme: str
    mood: str
    language: str
    max_length: int
    auto_mode: bool
    preset: str | None
    dj_role_id: int | None
    text_channel_id: int | None
    voice_channel_id: int | None
    updated_at: float
    #: The adapter the station sings with (a folder in ADAPTERS_DIR), None: the base model.
    adapter: str | None = None
    adapter_scale: float = 1.0
    #: Learn the listeners' taste and lean auto songs to it (`/radio_settings taste:`).
    taste: bool = True
    #: Evidence of the taste from before this time (a reset) is not counted.
    taste_since: float = 0.0
    #: "clean" or "explicit"; None: LYRICS_RATING from .env decides.
    lyrics_rating: str | None = None

    def style(self, default_rating: str = "clean") -> StationStyle:
        """The station's sound, as the songwriter takes it; `default_rating` is
        LYRICS_RATING, for a station that has not chosen its own."""
        return StationStyle(
            genre=self.genre,
            theme=self.theme,
            mood=self.mood,
            language=self.language,
            max_duration=self.max_length,
            rating=self.lyrics_rating or default_rating,
        )


@dataclass(frozen=True)
class Job:
    """One song to make: a listener's request or the station's own auto-fill."""

    id: int
    guild_id: int
    kind: JobKind
    requester_id: int | None
    requester_name: str | None
    theme: str
    genre: str | None
    length: int | None
    status: JobStatus
    attempts: int
    failure_reason: str | None
    spec: SongSpec | None
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class TrackRecord:
    """A finished track as stored: the engine's `Track` plus where it stands."""

    id: int
    guild_id: int
    job_id: int | None
    path: Path
    track: Track
    requester_id: int | None
    requester_name: str | None
    duration: float
    generation_seconds: float
    size_bytes: int
    status: TrackStatus
    created_at: float

    @property
    def spec(self) -> SongSpec:
        return self.track.spec

    @property
    def title(self) -> str:
        return self.track.spec.title

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio per second of generation (above 1: faster than real time)."""
        return self.duration / self.generation_seconds


@dataclass(frozen=True)
class Play:
    """One playing of a track; `ended_at` and `outcome` are None while it plays."""

    id: int
    guild_id: int
    track: TrackRecord
    source: PlaySource
    started_at: float
    ended_at: float | None
    outcome: PlayOutcome | None


@dataclass(frozen=True)
class VoteTally:
    count: int
    added: bool  # False when this user had already voted


@dataclass(frozen=True)
class RecoveryReport:
    requeued_jobs: list[int]
    failed_jobs: list[int]
    interrupted_tracks: list[int]
    missing_tracks: list[int]


@dataclass(frozen=True)
class PruneReport:
    pruned_tracks: list[int]
    freed_bytes: int
    total_bytes: int  # what the kept tracks take after pruning
    budget_bytes: int

    @property
    def over_budget(self) -> bool:
        """True when what is left (buffered, playing, undeletable) still exceeds the budget."""
        return self.total_bytes > self.budget_bytes


_R = TypeVar("_R")


def _from_row(cls: type[_R], row: sqlite3.Row, **parsed: Any) -> _R:
    """Build record `cls` from the row's columns of the same names, plus `parsed` ones."""
    names = [f.name for f in fields(cls) if f.name not in parsed]  # type: ignore[arg-type]
    return cls(**{name: row[name] for name in names}, **parsed)


def settings_from_row(row: sqlite3.Row) -> GuildSettings:
    return _from_row(GuildSettings, row, auto_mode=bool(row["auto_mode"]), taste=bool(row["taste"]))


def job_from_row(row: sqlite3.Row) -> Job:
    spec = row["spec_json"]
    return _from_row(Job, row, spec=SongSpec.model_validate_json(spec) if spec is not None else None)


def track_from_row(row: sqlite3.Row) -> TrackRecord:
    return _from_row(
        TrackRecord,
        row,
        path=Path(row["path"]),
        track=Track.model_validate_json(row["track_json"]),
    )
