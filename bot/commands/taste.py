"""Taste and keeping songs, open to everyone: `/radio_taste`, `/radio_save`, and
`/radio_favorites` (whose `queue:` option is for DJs).

Song ids arrive as command options and may be forged: the store only hands
out songs of the guild the command was run in that have been played there.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.commands.common import RadioCog, member_of
from bot.permissions import anyone
from bot.render import safe
from bot.replies import RadioError, answer, defer
from bot.station import Station
from bot.store import TrackRecord
from bot.taste.render import favorites_embed, saved_song_embed, taste_embed
from engine.text_safety import sanitize_text, slug

if TYPE_CHECKING:
    from bot.app import RadioBot

#: What a bot may attach to a direct message (Discord's limit for bots), in bytes.
DM_FILE_LIMIT = 10 * 1024**2
#: Discord's error code for a DM to a member who does not accept them.
CANNOT_DM = 50007
SONG_OPTION = "A song from /radio_history or /radio_favorites, e.g. #12 (default: playing now)"
_SONG_ID = re.compile(r"^\s*#?\s*([0-9]{1,19})\s*$")
SAVES_PER_MINUTE = 10  # per listener: refusals count too


def song_id(value: object) -> int:
    """`12`, `#12` -> 12; anything else is refused, saying what is allowed."""
    match = _SONG_ID.match(value) if isinstance(value, str) else None
    if match is None:
        raise RadioError(
            f"song {safe(str(value), 40)!r} is not a song number: give one from "
            "/radio_history or /radio_favorites, such as #12."
        )
    return int(match.group(1))


def file_name(record: TrackRecord) -> str:
    """A plain file name for the song: its title's slug, its number, its own suffix."""
    return f"{slug(record.title, 60)}-{record.id}{record.path.suffix or '.ogg'}"


class Taste(RadioCog):
    async def _suggest(
        self,
        interaction: discord.Interaction,
        current: str,
        songs: Callable[[Station], Awaitable[Iterable[TrackRecord]]],
    ) -> list[app_commands.Choice[str]]:
        station = self.radio.known_station(interaction.guild_id or 0)
        return [] if station is None else _choices(await songs(station), current)

    @anyone
    @app_commands.command(name="radio_taste", description="What this server likes and dislikes, and why")
    @app_commands.guild_only()
    async def radio_taste(self, interaction: discord.Interaction) -> None:
        station = self.aired_station(member_of(interaction).guild.id)
        await defer(interaction)
        profile = await asyncio.to_thread(station.store.taste_profile, station.guild_id)
        await answer(interaction, embed=taste_embed(profile, station.settings))

    @anyone
    @app_commands.command(name="radio_save", description="Get a song in your DMs: audio, lyrics, how it was made")
    @app_commands.guild_only()
    @app_commands.describe(song=SONG_OPTION)
    @app_commands.checks.cooldown(SAVES_PER_MINUTE, 60.0, key=lambda i: (i.guild_id, i.user.id))
    async def radio_save(self, interaction: discord.Interaction, song: str | None = None) -> None:
        member = member_of(interaction)
        station = self.aired_station(member.guild.id)
        if song is None:
            playing = station.now_playing
            if playing is None:
                raise RadioError("Nothing is playing: name a song from /radio_history, such as `song: #12`.")
            track_id = playing.track.id
        else:
            track_id = song_id(song)
        await defer(interaction, ephemeral=True)
        record = await asyncio.to_thread(station.store.played_track, station.guild_id, track_id)
        try:
            data = await asyncio.to_thread(record.path.read_bytes)
        except OSError as exc:
            raise RadioError(
                f"the file of **{safe(record.title, 100)}** cannot be read ({exc.strerror}): it cannot be sent."
            ) from exc
        if len(data) > DM_FILE_LIMIT:
            raise RadioError(
                f"**{safe(record.title, 100)}** is {len(data) / 2**20:.1f} MB: "
                "Discord lets the radio send at most 10 MB."
            )
        embed = saved_song_embed(record, member.guild.name)
        try:
            await member.send(embed=embed, file=discord.File(io.BytesIO(data), file_name(record)))
        except discord.Forbidden as exc:
            if exc.code != CANNOT_DM:
                raise
            raise RadioError(
                "The radio cannot send you direct messages: allow direct messages "
                "from members of this server (Privacy Settings of the server) and "
                "try again."
            ) from exc
        await answer(interaction, f"📬 Sent **{safe(record.title, 100)}** to your direct messages.", ephemeral=True)

    @radio_save.autocomplete("song")
    async def _recent_songs(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self._suggest(interaction, current, _recent)

    @anyone
    @app_commands.command(name="radio_favorites", description="The songs this server liked; a DJ can queue one again")
    @app_commands.guild_only()
    @app_commands.describe(queue="DJ: put this favourite back in the queue, e.g. #12")
    async def radio_favorites(self, interaction: discord.Interaction, queue: str | None = None) -> None:
        station = self.aired_station(member_of(interaction).guild.id)
        if queue is None:
            await defer(interaction)
            favorites = await asyncio.to_thread(station.store.favorites, station.guild_id, 15)
            await answer(interaction, embed=favorites_embed(favorites))
            return
        if not self.radio.is_dj(interaction):
            raise RadioError(
                "Only a DJ (Manage Server or the DJ role) can put a favourite back "
                "in the queue; `/radio_favorites` alone lists them."
            )
        track_id = song_id(queue)
        await defer(interaction)
        record = await station.queue_favorite(track_id)
        await answer(
            interaction,
            f"🔁 **{safe(record.title, 100)}** is back in the queue: it plays next, after listeners' requests.",
        )

    @radio_favorites.autocomplete("queue")
    async def _favorite_songs(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self._suggest(interaction, current, _favorites)


async def _recent(station: Station) -> list[TrackRecord]:
    plays = await station.history(25)
    return list({play.track.id: play.track for play in plays}.values())


async def _favorites(station: Station) -> list[TrackRecord]:
    favorites = await asyncio.to_thread(station.store.favorites, station.guild_id, 25)
    return [favorite.record for favorite in favorites]


def _choices(records: Iterable[TrackRecord], current: str) -> list[app_commands.Choice[str]]:
    """Suggestions `Title (#12)` -> `12` matching what was typed."""
    typed = current.strip().lstrip("#").casefold()
    found = []
    for record in records:
        label = f"{sanitize_text(record.title, 80)} (#{record.id})"
        if typed in label.casefold():
            found.append(app_commands.Choice(name=label[:100], value=str(record.id)))
    return found[:25]


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(Taste(bot))
