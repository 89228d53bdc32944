"""Listening commands, open to everyone: join, leave, now playing, queue, request,
skip, history, stats, help."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import choices
from bot.commands.common import RadioCog, listener_name, member_of
from bot.permissions import LEVELS, access_of, anyone
from bot.render import (
    CommandHelp,
    NowPlaying,
    help_embed,
    history_embed,
    now_playing_embed,
    queue_embed,
    safe,
    stats_embed,
    status_text,
)
from bot.replies import RadioError, answer, defer
from bot.store import MAX_GENRE_CHARS, MAX_THEME_CHARS
from bot.votes import skip_now, vote_skip
from engine.spec import MAX_DURATION, MIN_DURATION

if TYPE_CHECKING:
    from bot.app import RadioBot

MAX_HISTORY_SHOWN = 25


def history_count(value: object) -> int:
    """Discord does not enforce `Range`: check the count here."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HISTORY_SHOWN:
        raise RadioError(f"count {value!r} is not allowed: give 1 to {MAX_HISTORY_SHOWN}.")
    return value


class Listening(RadioCog):
    @anyone
    @app_commands.command(name="radio_join", description="Bring the radio into your voice channel")
    @app_commands.guild_only()
    async def radio_join(self, interaction: discord.Interaction) -> None:
        member = member_of(interaction)
        voice = member.voice
        channel = voice.channel if voice is not None else None
        if not isinstance(channel, discord.VoiceChannel):
            raise RadioError("Join a voice channel first, then run /radio_join: the radio plays in your channel.")
        me = member.guild.me
        allowed = channel.permissions_for(me)
        missing = [name for name, ok in (("Connect", allowed.connect), ("Speak", allowed.speak)) if not ok]
        if missing:
            raise RadioError(
                f"The radio lacks {' and '.join(missing)} in {channel.mention}: "
                "allow its role there, or pick another channel."
            )
        current = self.radio.voice_channel(member.guild.id)
        if (
            current is not None
            and current != channel
            and self.radio.listeners(current)
            and not self.radio.is_dj(interaction)
        ):
            raise RadioError(
                f"The radio is playing for listeners in {current.mention}: join it there. A DJ can move it."
            )
        await defer(interaction)
        try:
            station = await self.radio.join(channel, interaction.channel_id)
        except (asyncio.TimeoutError, discord.ClientException) as exc:
            why = str(exc) or "no answer from Discord"
            raise RadioError(f"Could not connect to {channel.mention} ({why}): try again.") from exc
        text = station.settings.text_channel_id
        where = f" Now-playing messages go to <#{text}>." if text else ""
        await answer(interaction, f"📻 On air in {channel.mention}.{where} Ask for a song with /radio_request.")

    @anyone
    @app_commands.command(name="radio_leave", description="Stop the radio and leave the channel")
    @app_commands.guild_only()
    async def radio_leave(self, interaction: discord.Interaction) -> None:
        member = member_of(interaction)
        channel = self.radio.voice_channel(member.guild.id)
        if channel is None:
            raise RadioError("The radio is not in a voice channel.")
        if member not in self.radio.listeners(channel) and not self.radio.is_dj(interaction):
            raise RadioError(f"Only listeners in {channel.mention} or a DJ can make the radio leave.")
        await defer(interaction)
        await self.radio.leave(member.guild.id)
        await answer(
            interaction, f"👋 Left {channel.mention}. /radio_join brings the radio back; its queue and songs are kept."
        )

    @anyone
    @app_commands.command(name="radio_nowplaying", description="The song playing now")
    @app_commands.guild_only()
    async def radio_nowplaying(self, interaction: discord.Interaction) -> None:
        station = self.aired_station(member_of(interaction).guild.id)
        await defer(interaction)
        status = await station.status()
        player = self.radio.player(station.guild_id)
        if status.now_playing is None or player is None:
            await answer(interaction, status_text(status))
            return
        now = NowPlaying(
            status.now_playing.track, elapsed=player.elapsed, paused=player.paused, replay=status.replaying
        )
        await answer(interaction, embed=now_playing_embed(now))

    @anyone
    @app_commands.command(name="radio_queue", description="What is ready, being made and waiting")
    @app_commands.guild_only()
    async def radio_queue(self, interaction: discord.Interaction) -> None:
        station = self.aired_station(member_of(interaction).guild.id)
        await defer(interaction)
        await answer(interaction, embed=queue_embed(await station.status()))

    @anyone
    @app_commands.command(name="radio_request", description="Ask the radio for a song")
    @app_commands.guild_only()
    @app_commands.describe(
        theme="What the song is about, e.g. 'rainy night in Tokyo'",
        genre="A genre for this song (default: the station's)",
        length=f"Length in seconds ({MIN_DURATION} up to the station's longest song)",
    )
    @app_commands.autocomplete(genre=choices.genres)
    async def radio_request(
        self,
        interaction: discord.Interaction,
        theme: app_commands.Range[str, 1, MAX_THEME_CHARS],
        genre: app_commands.Range[str, 1, MAX_GENRE_CHARS] | None = None,
        length: app_commands.Range[int, MIN_DURATION, MAX_DURATION] | None = None,
    ) -> None:
        member = member_of(interaction)
        await defer(interaction)
        station = await self.radio.station(member.guild.id)
        receipt = await station.request(member.id, listener_name(member), theme, genre=genre, length=length)
        if receipt.position is None:  # already taken by the worker
            place = "number 1 in the queue: it is being made now"
        else:
            place = f"number {receipt.position} in the queue"
        listening = (
            ""
            if self.radio.voice_channel(member.guild.id)
            else (" The radio is not in a voice channel: /radio_join to hear it.")
        )
        cleaned = (
            "This station's lyrics are rated clean, so words about drugs, sex, slurs or "
            "self-harm were left out of your theme. "
            if receipt.cleaned
            else ""
        )
        await answer(
            interaction, f"🎵 {cleaned}Your song about “{safe(receipt.job.theme, 100)}” is {place}.{listening}"
        )

    @anyone
    @app_commands.command(name="radio_skip", description="Vote to skip the song playing now")
    @app_commands.guild_only()
    async def radio_skip(self, interaction: discord.Interaction) -> None:
        member = member_of(interaction)
        station = self.aired_station(member.guild.id)
        play = station.now_playing
        if play is None:
            raise RadioError("Nothing is playing, so there is nothing to skip.")
        channel = self.radio.voice_channel(member.guild.id)
        listeners = self.radio.listeners(channel)
        dj = self.radio.is_dj(interaction)
        if member not in listeners and not dj:
            where = channel.mention if channel is not None else "the radio's voice channel"
            raise RadioError(f"Only listeners can vote: join {where} first.")
        await defer(interaction)
        title = safe(play.track.title, 100)
        if dj or play.track.requester_id == member.id:
            skip_now(station, play)
            why = "a DJ" if dj else "its requester"
            await answer(interaction, f"⏭️ Skipped **{title}** ({why} skipped it).")
            return
        outcome = await vote_skip(station, play, member.id, len(listeners), self.bot.settings.vote_skip_ratio)
        count = f"{outcome.votes}/{outcome.needed} votes"
        if outcome.skipped:
            text = f"⏭️ Skipped **{title}** ({count})."
        elif not outcome.counted:
            text = f"You have voted already: {count} to skip **{title}**."
        else:
            text = f"🗳️ Vote counted: {count} to skip **{title}**."
        await answer(interaction, text)

    @anyone
    @app_commands.command(name="radio_history", description="The songs played last")
    @app_commands.guild_only()
    @app_commands.describe(count=f"How many songs (1 to {MAX_HISTORY_SHOWN}, default 10)")
    async def radio_history(
        self,
        interaction: discord.Interaction,
        count: app_commands.Range[int, 1, MAX_HISTORY_SHOWN] = 10,
    ) -> None:
        count = history_count(count)
        station = self.aired_station(member_of(interaction).guild.id)
        await defer(interaction)
        await answer(interaction, embed=history_embed(await station.history(count)))

    @anyone
    @app_commands.command(name="radio_stats", description="How the station is doing")
    @app_commands.guild_only()
    async def radio_stats(self, interaction: discord.Interaction) -> None:
        station = self.aired_station(member_of(interaction).guild.id)
        await defer(interaction)
        workers = self.bot.stations.client.summary()
        await answer(interaction, embed=stats_embed(await station.stats(), workers))

    @anyone
    @app_commands.command(name="radio_help", description="Every radio command and who may use it")
    async def radio_help(self, interaction: discord.Interaction) -> None:
        listed = [
            CommandHelp(c.qualified_name, c.description, level.heading)
            for c in sorted(self.bot.tree.walk_commands(), key=lambda c: c.qualified_name)
            if isinstance(c, app_commands.Command) and (level := access_of(c)) is not None
        ]
        await answer(interaction, embed=help_embed([level.heading for level in LEVELS], listed), ephemeral=True)


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(Listening(bot))
