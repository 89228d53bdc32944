"""One guild's radio: listeners' wishes and the station's style, its status, and
shutdown, on top of its song making and play loop. See the package docstring.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.adapter_library import require_adapter
from bot.presets import PRESETS
from bot.station.config import CHANNEL_KEYS, STYLE_KEYS, RequestReceipt, StationState, StationStatus
from bot.station.making import SongMaking
from bot.station.playing import PlayLoop
from bot.store import (
    MAX_HISTORY,
    GuildSettings,
    InvalidValueError,
    Play,
    StationStats,
    TrackRecord,
    check_bool,
    check_int,
)
from engine.songwriter.content_rating import check_theme

log = logging.getLogger("bot.station")


class Station(SongMaking, PlayLoop):
    """One guild's radio. See the package docstring."""

    # --- listeners' wishes and the station's style ----------------------------
    async def request(
        self,
        user_id: int,
        user_name: str,
        theme: str,
        *,
        genre: str | None = None,
        length: int | None = None,
    ) -> RequestReceipt:
        """Queue a listener's song. Raises `QueueFullError` past the limits and
        `InvalidValueError` for bad input (each names the field and what is allowed).

        Under a clean rating, words the station does not sing leave the theme
        before it is stored (`RequestReceipt.cleaned`); a theme made only of
        them is refused.
        """
        checked = await asyncio.to_thread(check_theme, theme, self.settings.language, self.lyrics_rating)
        if checked.cleaned and not checked.theme.strip():
            raise InvalidValueError(
                "theme",
                "(not shown)",
                "a theme this station can sing: its lyrics are rated clean (no drugs, sex, slurs or self-harm)",
            )
        theme = checked.theme
        job = await self._db(
            lambda: self.store.enqueue_request(
                self.guild_id,
                requester_id=user_id,
                requester_name=user_name,
                theme=theme,
                genre=genre,
                length=length,
                max_per_user=self.config.max_per_user,
                max_per_guild=self.config.max_per_guild,
            )
        )
        position = await self._db(self.store.queue_position, job.id)
        log.info("guild %d: %s asked for %r (job %d)", self.guild_id, user_name, theme, job.id)
        await self.top_up()  # a request may take an auto-fill job's place
        self.maker.wake()
        return RequestReceipt(job, position, checked.cleaned)

    @property
    def lyrics_rating(self) -> str:
        """The station's own rating, else LYRICS_RATING."""
        return self.settings.lyrics_rating or self.config.lyrics_rating

    async def set_lyrics_rating(self, rating: str | None) -> GuildSettings:
        """Set `clean` or `explicit` for this station; None follows LYRICS_RATING again."""
        self._settings = await self._db(lambda: self.store.update_guild_settings(self.guild_id, lyrics_rating=rating))
        return self._settings

    async def set_style(self, **changes: Any) -> GuildSettings:
        """Change genre, theme, mood, language and/or max_length; clears the preset."""
        unknown = sorted(set(changes) - set(STYLE_KEYS))
        if unknown:
            raise InvalidValueError("style setting", unknown[0], f"one of {', '.join(STYLE_KEYS)}")
        self._settings = await self._db(lambda: self.store.update_guild_settings(self.guild_id, preset=None, **changes))
        return self._settings

    async def update_settings(self, **changes: Any) -> GuildSettings:
        """Change the DJ role and the text and voice channels (ids, or None)."""
        unknown = sorted(set(changes) - set(CHANNEL_KEYS))
        if unknown:
            raise InvalidValueError("setting", unknown[0], f"one of {', '.join(CHANNEL_KEYS)} (style: set_style)")
        self._settings = await self._db(lambda: self.store.update_guild_settings(self.guild_id, **changes))
        return self._settings

    async def apply_preset(self, name: str) -> GuildSettings:
        preset = PRESETS.get(name.strip().lower()) if isinstance(name, str) else None
        if preset is None:
            raise InvalidValueError("preset", name, f"one of {', '.join(PRESETS)}")
        self._settings = await self._db(
            lambda: self.store.update_guild_settings(
                self.guild_id, genre=preset.genre, mood=preset.mood, preset=preset.name
            )
        )
        return self._settings

    async def set_adapter(self, name: str | None, scale: float | None = None) -> GuildSettings:
        """Sing the next songs with adapter `name` (None: the base model) at `scale`
        (unchanged when None). Songs already made or in the making keep their sound."""
        if name is not None and self.config.adapters_dir is not None:
            found = await asyncio.to_thread(require_adapter, self.config.adapters_dir, name, self.guild_id)
            name = found.key
        changes: dict[str, Any] = {"adapter": name}
        if scale is not None:
            changes["adapter_scale"] = scale
        self._settings = await self._db(lambda: self.store.update_guild_settings(self.guild_id, **changes))
        self.adapter_problem = None
        self._notify()
        return self._settings

    async def set_auto_mode(self, enabled: bool) -> GuildSettings:
        """Auto mode on: keep the buffer full. Off: queued auto-fill jobs are cancelled
        (songs already made still play)."""
        check_bool("auto_mode", enabled)
        self._settings = await self._db(lambda: self.store.update_guild_settings(self.guild_id, auto_mode=enabled))
        if not enabled:
            await self._db(self.store.cancel_queued, self.guild_id, kind="auto")
        await self.top_up()
        self._notify()
        return self._settings

    async def set_taste(self, mode: str) -> GuildSettings:
        """`on`: learn the listeners' taste and lean auto songs to it; `off`: write as
        if nothing was learnt (reactions are still recorded); `reset`: forget what was
        learnt so far (favourites stay)."""
        changes: dict[str, Any]
        if mode == "reset":
            changes = {"taste_since": self.store.now()}
        elif mode in ("on", "off"):
            changes = {"taste": mode == "on"}
        else:
            raise InvalidValueError("taste", mode, "on, off or reset")
        self._settings = await self._db(lambda: self.store.update_guild_settings(self.guild_id, **changes))
        return self._settings

    async def queue_favorite(self, track_id: int) -> TrackRecord:
        """Put a favourite back in the buffer: it plays next, after listeners' requests."""
        record = await self._db(self.store.requeue_favorite, self.guild_id, track_id)
        self._buffer.insert(0, record)
        self._prepare_next()
        self._notify()
        await self.top_up()
        return record

    # --- status ---------------------------------------------------------------
    async def status(self) -> StationStatus:
        """What plays, what is buffered, what is queued and being made, and why."""
        queue = await self._db(self.store.pending_jobs, self.guild_id)
        busy = self.maker.busy_reason
        state: StationState
        if not self.playing:
            state, message = "stopped", "the station is stopped"
        elif self._paused:
            state, message = "paused", "paused"
        elif self._now is None:
            state = "waiting"
            if self._dry:
                message = "the buffer ran dry: waiting for the next song"
            elif busy:
                message = "waiting: the library is empty and no new songs are being made"
            else:
                message = "waiting for the first song"
        else:
            state = "playing"
            message = f"playing {self._now.track.title!r}"
            if self._now.source == "replay":
                message += " (a replay from the library)"
        notes = []
        if self.adapter_problem is not None:
            notes.append(f"the adapter was switched off ({self.adapter_problem}): singing with the base model")
        if busy:
            notes.append(f"no new songs right now ({busy}): playing the buffer, then replaying the library")
        return StationStatus(
            guild_id=self.guild_id,
            state=state,
            message=message,
            now_playing=self._now,
            replaying=self._now is not None and self._now.source == "replay",
            buffered=self.buffered,
            queue=tuple(queue),
            making=self.making,
            settings=self.settings,
            busy_reason=busy,
            skipped_missing=self.skipped_missing,
            notes=tuple(notes),
        )

    async def history(self, limit: int = 10) -> list[Play]:
        check_int("limit", limit, 1, MAX_HISTORY)
        return await self._db(self.store.history, self.guild_id, limit)

    async def stats(self) -> StationStats:
        return await self._db(self.store.stats, self.guild_id)

    async def close(self) -> None:
        """Shut down: stop playing (the track that was playing is played again after
        the restart) and wait for the station's background work."""
        self._closing = True
        await self.stop()
        await self._tasks.wait()
