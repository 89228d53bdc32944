"""Radio: the Discord side of every station. Voice players, now-playing boards,
listeners, the idle timer, reconnection and rejoining after a restart.

The stations (bot.station) know nothing of Discord; the cogs are thin. This
is the glue in between: it owns one `VoicePlayer` and one `NowPlayingBoard`
per guild and keeps the guild's voice and text channel in the station's
settings, so a restarted bot goes back to the channels it was playing in
(when someone is still listening there).

While nobody listens the station makes no songs of its own (auto-fill
pauses; requests are still made); alone in a channel for
`IDLE_DISCONNECT_SECONDS`, the radio stops its station and leaves. When the
voice connection is lost and cannot be mended (see bot.player), it stops the
station and says so in the text channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import discord

from bot.nowplaying import NowPlayingBoard
from bot.permissions import NotAllowedError, require_dj
from bot.player import VoicePlayer
from bot.settings import BotSettings
from bot.station import Station
from bot.station.manager import StationManager
from bot.store import ReactionTally, StoreError, TrackRecord, UnknownGuildError
from bot.taste.buttons import reaction_view
from engine.background import BackgroundTasks

log = logging.getLogger("bot.radio")


class Radio:
    """Every guild's voice playback. See the module docstring."""

    def __init__(
        self,
        client: discord.Client,
        stations: StationManager,
        settings: BotSettings,
        *,
        voice_cls: Callable[..., Any] = discord.VoiceClient,
    ):
        self.client = client
        self.stations = stations
        self.settings = settings
        self.voice_cls = voice_cls
        self.players: dict[int, VoicePlayer] = {}
        self.boards: dict[int, NowPlayingBoard] = {}
        self._idle: dict[int, asyncio.Task[None]] = {}
        self._tasks = BackgroundTasks(log)

    # --- lookups --------------------------------------------------------------
    async def station(self, guild_id: int) -> Station:
        """The guild's station, created with default settings on first use."""
        return await self.stations.add_station(guild_id)

    def known_station(self, guild_id: int) -> Station | None:
        try:
            return self.stations.station(guild_id)
        except UnknownGuildError:
            return None

    def player(self, guild_id: int) -> VoicePlayer | None:
        return self.players.get(guild_id)

    def _player(self, guild_id: int) -> VoicePlayer:
        player = self.players.get(guild_id)
        if player is None:
            player = VoicePlayer(
                self.client,
                guild_id,
                voice_cls=self.voice_cls,
                on_start=lambda record: self.boards[guild_id].track_started(record),
                on_lost=lambda reason: self._spawn(self._lost(guild_id, reason)),
            )
            self.players[guild_id] = player
            self.boards[guild_id] = NowPlayingBoard(
                self.client,
                player,
                lambda: self._text_channel_id(guild_id),
                view=self._reaction_view,
            )
        return player

    async def _reaction_view(self, record: TrackRecord) -> discord.ui.View:
        """The 👍/👎 buttons under a now-playing message (counts of 0 if the store fails)."""
        try:
            tally = await asyncio.to_thread(self.stations.store.reaction_tally, record.id)
        except StoreError as exc:
            log.warning("guild %d: cannot count the reactions to %d: %s", record.guild_id, record.id, exc)
            tally = ReactionTally(0, 0)
        return reaction_view(record.id, tally)

    def _text_channel_id(self, guild_id: int) -> int | None:
        station = self.known_station(guild_id)
        return station.settings.text_channel_id if station is not None else None

    def dj_role_id(self, guild_id: int) -> int | None:
        station = self.known_station(guild_id)
        return station.settings.dj_role_id if station is not None else None

    def is_dj(self, interaction: discord.Interaction) -> bool:
        """Manage Server, or the DJ role (see bot.permissions)."""
        try:
            self.require_dj(interaction)
        except NotAllowedError:
            return False
        return True

    def require_dj(self, interaction: discord.Interaction) -> None:
        """Raise `NotAllowedError` (saying who may) unless the member is a DJ."""
        name = interaction.command.name if interaction.command else "this command"
        guild_id = interaction.guild_id or 0
        require_dj(interaction.user, interaction.permissions, self.dj_role_id(guild_id), self.settings.dj_role, name)

    @staticmethod
    def listeners(channel: discord.VoiceChannel | None) -> list[discord.Member]:
        """The people (not bots) in `channel`."""
        return [] if channel is None else [m for m in channel.members if not m.bot]

    def voice_channel(self, guild_id: int) -> discord.VoiceChannel | None:
        """Where the radio is playing in the guild, or None."""
        player = self.players.get(guild_id)
        return player.channel if player is not None and player.connected else None

    # --- joining and leaving --------------------------------------------------
    async def join(self, channel: discord.VoiceChannel, text_channel_id: int | None) -> Station:
        """Join (or move to) `channel` and start the station if it is not playing.

        The now-playing messages go to `text_channel_id` unless the station
        already has a channel for them.
        """
        guild_id = channel.guild.id
        station = await self.station(guild_id)
        player = self._player(guild_id)
        await player.connect(channel)
        changes: dict[str, Any] = {"voice_channel_id": channel.id}
        if station.settings.text_channel_id is None and text_channel_id is not None:
            changes["text_channel_id"] = text_channel_id
        await station.update_settings(**changes)
        if not station.playing:
            player.resume()  # a station starts unpaused
            await station.start(player)
        self.check_alone(channel.guild)
        return station

    async def leave(self, guild_id: int, *, forget: bool = True) -> bool:
        """Stop the station and leave voice; False when the radio was not connected.

        With `forget` the voice channel is cleared, so a restart does not rejoin.
        """
        self._cancel_idle(guild_id)
        station = self.known_station(guild_id)
        player = self.players.get(guild_id)
        was_connected = player is not None and player.connected
        if station is not None:
            await station.stop()
            if forget:
                await station.update_settings(voice_channel_id=None)
        if player is not None:
            await player.disconnect()
            await self.boards[guild_id].close()
        return was_connected

    async def _lost(self, guild_id: int, reason: str) -> None:
        log.error("guild %d: voice connection lost for good: %s", guild_id, reason)
        await self.leave(guild_id)
        await self.announce(guild_id, f"The radio lost its voice connection ({reason}). Use /radio_join to restart.")

    async def announce(self, guild_id: int, text: str) -> None:
        """Say something in the station's text channel (best effort)."""
        channel_id = self._text_channel_id(guild_id)
        channel = self.client.get_channel(channel_id) if channel_id else None
        if not isinstance(channel, discord.abc.Messageable):
            return
        try:
            await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:
            log.warning("guild %d: cannot post in channel %s: %s", guild_id, channel_id, exc)

    # --- voice events ---------------------------------------------------------
    def voice_state_changed(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        """Someone joined, left or moved: start or cancel the idle timer; if the
        radio itself was disconnected from outside, reconnect."""
        guild = member.guild
        player = self.players.get(guild.id)
        if player is None or player.channel_id is None:
            return
        if self.client.user is not None and member.id == self.client.user.id:
            if after.channel is None:
                station = self.known_station(guild.id)
                if station is not None and station.playing:
                    self._spawn(self._reconnect(player))
            elif after.channel.id != player.channel_id:
                player.channel_id = after.channel.id  # moved by an admin: stay there
            self.check_alone(guild)
            return
        self.check_alone(guild)

    async def _reconnect(self, player: VoicePlayer) -> None:
        try:
            await player.ensure_connected()
        except Exception as exc:  # the next play() tries again and reports it
            log.warning("guild %d: reconnect failed: %s", player.guild_id, exc)

    def check_alone(self, guild: discord.Guild) -> None:
        """Start the idle timer when nobody listens, cancel it when someone does."""
        player = self.players.get(guild.id)
        channel = player.channel if player is not None else None
        station = self.known_station(guild.id)
        if station is not None and channel is not None:
            station.set_audience(bool(self.listeners(channel)))  # no auto-fill for nobody
        if channel is None or self.listeners(channel):
            self._cancel_idle(guild.id)
            return
        seconds = self.settings.idle_disconnect_seconds
        if seconds and guild.id not in self._idle:
            self._idle[guild.id] = self._spawn(self._leave_when_alone(guild.id, seconds))

    async def _leave_when_alone(self, guild_id: int, seconds: float) -> None:
        await asyncio.sleep(seconds)  # a timer: someone joining cancels it
        self._idle.pop(guild_id, None)
        player = self.players.get(guild_id)
        if player is None or self.listeners(player.channel):
            return
        log.info("guild %d: alone for %g s: leaving", guild_id, seconds)
        await self.leave(guild_id)
        await self.announce(
            guild_id, f"Nobody was listening for {seconds:g} s, so the radio left. /radio_join brings it back."
        )

    def _cancel_idle(self, guild_id: int) -> None:
        task = self._idle.pop(guild_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # --- start-up and shutdown ------------------------------------------------
    async def restore(self) -> None:
        """After a restart: rejoin each station's voice channel where people listen."""
        for station in self.stations.stations:
            channel_id = station.settings.voice_channel_id
            if channel_id is None:
                continue
            channel = self.client.get_channel(channel_id)
            if not isinstance(channel, discord.VoiceChannel) or not self.listeners(channel):
                await station.update_settings(voice_channel_id=None)
                continue
            try:
                await self.join(channel, None)
                log.info("guild %d: back on air in %s", station.guild_id, channel.name)
            except (asyncio.TimeoutError, discord.ClientException, OSError) as exc:
                log.warning("guild %d: cannot rejoin %s: %s", station.guild_id, channel_id, exc)

    async def close(self) -> None:
        """Stop every station and leave voice, remembering the channels for a restart."""
        for guild_id in list(self.players):
            await self.leave(guild_id, forget=False)
        await self._tasks.cancel()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)
