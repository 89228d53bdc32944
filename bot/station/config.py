"""What a station is given and what it gives back: its limits (`StationConfig`),
the player and song maker it drives (protocols), a request's receipt and the status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from bot.settings import BotSettings
from bot.store import MAX_QUEUE_LIMIT, GuildSettings, Job, Play, TrackRecord, check_int, check_rating
from engine.spec import MAX_DURATION, MIN_DURATION

log = logging.getLogger("bot.station")

STYLE_KEYS = ("genre", "theme", "mood", "language", "max_length")
#: BotSettings of the Discord side, kept with the station so a restart finds them.
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
    def from_settings(cls, settings: BotSettings, **changes: Any) -> StationConfig:
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
