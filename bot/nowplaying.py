"""The now-playing message in a station's text channel.

Each track gets a fresh message at the bottom of the channel (the previous
one is deleted, so the channel holds one), and that message is edited every
`refresh_seconds` while the track plays, so its progress bar moves. Under it
are the 👍/👎 buttons with their counts (bot.taste.buttons). Posting
is best effort: a channel the bot cannot write to is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.player import VoicePlayer
from bot.render import NowPlaying, now_playing_embed
from bot.store import TrackRecord

log = logging.getLogger("bot.nowplaying")

REFRESH_SECONDS = 15.0


class NowPlayingBoard:
    """One guild's now-playing message. `track_started` is the player's `on_start`."""

    def __init__(
        self,
        client: discord.Client,
        player: VoicePlayer,
        channel_id: Callable[[], int | None],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        view: Callable[[TrackRecord], Awaitable[discord.ui.View]] | None = None,
    ):
        """`view` makes the buttons under a track's message (the 👍/👎 reactions)."""
        self.client = client
        self.player = player
        self.channel_id = channel_id
        self.view = view
        self.refresh_seconds = refresh_seconds
        self.message: discord.Message | None = None
        self._task: asyncio.Task[None] | None = None

    def track_started(self, record: TrackRecord) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._show(record))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _embed(self, record: TrackRecord) -> discord.Embed:
        return now_playing_embed(
            NowPlaying(
                record,
                elapsed=self.player.elapsed,
                paused=self.player.paused,
                replay=record.status == "played",
            )
        )

    async def _show(self, record: TrackRecord) -> None:
        channel = self._channel()
        if channel is None:
            return
        old, self.message = self.message, None
        if old is not None:
            with contextlib.suppress(discord.HTTPException):
                await old.delete()
        try:
            extra: dict[str, Any] = {}
            if self.view is not None:
                extra["view"] = await self.view(record)
            self.message = await channel.send(
                embed=self._embed(record), allowed_mentions=discord.AllowedMentions.none(), **extra
            )
            while self.player.current is record:
                await asyncio.sleep(self.refresh_seconds)  # a timer, not synchronisation
                if self.player.current is not record:
                    break
                await self.message.edit(embed=self._embed(record))
        except discord.HTTPException as exc:
            log.warning("cannot post now playing in channel %s: %s", channel.id, exc)

    def _channel(self) -> discord.abc.Messageable | None:
        channel_id = self.channel_id()
        if channel_id is None:
            return None
        channel = self.client.get_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("now-playing channel %s is gone or not a text channel", channel_id)
            return None
        return channel
