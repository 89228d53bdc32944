"""The state every part of a station shares, and the helpers they all use.

`Station` (bot.station.station) is assembled from parts that each hold one job:
`SongMaking` (jobs and the buffer top-up), `PlayLoop` (the play loop) and the
listeners' wishes and status in `Station` itself. They share this state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from bot.favorites import ReplayPicker
from bot.station.config import Player, SongMaker, StationConfig
from bot.store import GuildSettings, Play, Store, TrackRecord
from engine.background import BackgroundTasks
from engine.songwriter.content_rating import blocked_words

log = logging.getLogger("bot.station")


class StationBase:
    """One guild's station state; see the package docstring."""

    def __init__(self, guild_id: int, store: Store, maker: SongMaker, config: StationConfig):
        self.guild_id = guild_id
        self.store = store
        self.maker = maker
        self.config = config
        self._settings: GuildSettings | None = None
        self._buffer: list[TrackRecord] = []  # the store's buffer, in store order
        self._making: dict[int, str] = {}  # job id -> "writing", "singing 3/8", ...
        self._written: dict[int, list[asyncio.Task]] = {}  # job id -> mark_job_singing calls
        self._changed = asyncio.Event()
        self._fill_lock = asyncio.Lock()
        self._tasks = BackgroundTasks(log, f"guild {guild_id}: background task")
        self._player: Player | None = None
        self._play_task: asyncio.Task | None = None
        self._stopping = False
        self._closing = False
        self._paused = False
        self._now: Play | None = None
        self._has_played = False
        self._replays = ReplayPicker()
        self._dry = False
        self._audience = True  # someone listens; the Discord side says when nobody does
        self.skipped_missing = 0
        self.adapter_problem: str | None = None  # why the adapter was switched off
        self._job_adapters: dict[int, str | None] = {}  # job id -> the adapter it sings with

    # --- setup ----------------------------------------------------------------
    async def load(self) -> None:
        """Read the settings and the buffer from the store (after `Store.recover`)."""
        self._settings = await self._db(self.store.guild_settings, self.guild_id)
        self._buffer = await self._db(self.store.buffered_tracks, self.guild_id)
        # The rating's word lists, now: a first request should not wait for them.
        await asyncio.to_thread(blocked_words, "", self._settings.language)
        await self.top_up()

    @property
    def settings(self) -> GuildSettings:
        if self._settings is None:
            raise RuntimeError("call load() first")
        return self._settings

    # --- helpers --------------------------------------------------------------
    def notify(self) -> None:
        """Something outside changed (e.g. the GPU became busy or free): look again."""
        self._notify()

    async def wait_changed(self) -> None:
        """Return at the next change: a track buffered, started or ended, a job ended,
        a setting or the GPU's state changed."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _db(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store call in a thread: the event loop never waits on SQLite."""
        return await asyncio.to_thread(function, *args, **kwargs)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        return self._tasks.spawn(coro)
