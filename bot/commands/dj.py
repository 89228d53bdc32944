"""Station commands for DJs (Manage Server or the DJ role): the station's sound,
auto mode, pause/resume/stop, settings and uploads.

Each command is `@dj_only` (bot.permissions): Discord hides it from other
members, and the level checks for real before every run. Who is DJ and where the
radio posts (`/radio_settings dj_role: channel:`) need Manage Server itself:
a DJ cannot hand the DJ role to everyone. Autocomplete suggests nothing to
members who are not DJs. Values are checked again by the station and the
store, since Discord does not enforce `Range`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands

from bot import choices
from bot.commands.common import RadioCog, listener_name, member_of
from bot.permissions import NotAllowedError, describe_dj_role, dj_only, has_manage_server
from bot.render import safe, settings_embed
from bot.replies import RadioError, answer, defer
from bot.station import Station
from bot.store import MAX_GENRE_CHARS, MAX_MOOD_CHARS, MAX_STATION_THEME_CHARS, GuildSettings
from bot.uploads import check_attachment, prepare_upload, upload_track
from engine.spec import MAX_TITLE

if TYPE_CHECKING:
    from bot.app import RadioBot

SWITCH = {"on": True, "off": False}
TASTE_MODES = ("on", "off", "reset")


def style_line(settings: GuildSettings) -> str:
    parts = [f"genre **{safe(settings.genre, 100)}**"]
    if settings.mood:
        parts.append(f"style **{safe(settings.mood, 100)}**")
    if settings.theme:
        parts.append(f"theme **{safe(settings.theme, 200)}**")
    parts += [f"language **{settings.language}**", f"songs up to **{settings.max_length} s**"]
    return ", ".join(parts)


async def set_lyrics_rating(interaction: discord.Interaction, station: Station, rating: str) -> None:
    """The lyrics rating is for Manage Server only: a DJ role may be given to many."""
    permissions = getattr(interaction.user, "guild_permissions", None)
    if permissions is None or not permissions.manage_guild:
        raise RadioError("Only members with Manage Server can change the lyrics rating.")
    await station.set_lyrics_rating(rating)


class StationControl(RadioCog):
    # --- autocomplete: nothing for members who are not DJs ----------------------------
    async def _genres(self, interaction: discord.Interaction, current: str):
        return await choices.genres(interaction, current) if await dj_only.allows(interaction) else []

    async def _languages(self, interaction: discord.Interaction, current: str):
        return await choices.languages(interaction, current) if await dj_only.allows(interaction) else []

    async def _presets(self, interaction: discord.Interaction, current: str):
        return await choices.presets(interaction, current) if await dj_only.allows(interaction) else []

    async def _restyle(self, interaction: discord.Interaction, **change: str | int) -> None:
        """Change the station's style (`Station.set_style`) and say what it plays now."""
        station = await self._station(interaction)
        settings = await station.set_style(**change)
        await answer(interaction, f"🎛️ The station plays {style_line(settings)}.")

    async def _station(self, interaction: discord.Interaction) -> Station:
        await defer(interaction)
        return await self.radio.station(member_of(interaction).guild.id)

    @dj_only
    @app_commands.command(name="radio_auto", description="Turn auto mode on or off: the station makes songs by itself")
    @app_commands.describe(mode="on: keep songs coming; off: play requests only")
    @app_commands.choices(mode=[app_commands.Choice(name=n, value=n) for n in SWITCH])
    async def radio_auto(self, interaction: discord.Interaction, mode: str) -> None:
        if mode not in SWITCH:
            raise RadioError(f"mode {mode!r} is not allowed: give on or off.")
        station = await self._station(interaction)
        await station.set_auto_mode(SWITCH[mode])
        what = "the station makes songs by itself" if SWITCH[mode] else "only requests are made"
        await answer(interaction, f"🔁 Auto mode is {mode}: {what}.")

    @dj_only
    @app_commands.command(name="radio_genre", description="Set the station's genre")
    @app_commands.describe(genre="e.g. synthwave, jazz, lofi hip hop")
    @app_commands.autocomplete(genre=_genres)
    async def radio_genre(
        self, interaction: discord.Interaction, genre: app_commands.Range[str, 1, MAX_GENRE_CHARS]
    ) -> None:
        await self._restyle(interaction, genre=genre)

    @dj_only
    @app_commands.command(name="radio_theme", description="Set what the station's songs are about (empty: anything)")
    @app_commands.describe(theme="e.g. 'the sea at night'; leave out to clear it")
    async def radio_theme(
        self,
        interaction: discord.Interaction,
        theme: app_commands.Range[str, 1, MAX_STATION_THEME_CHARS] | None = None,
    ) -> None:
        await self._restyle(interaction, theme=theme or "")

    @dj_only
    @app_commands.command(name="radio_style", description="Set the station's style words (mood, sound; empty: none)")
    @app_commands.describe(style="e.g. 'dreamy, warm, analog'; leave out to clear it")
    async def radio_style(
        self,
        interaction: discord.Interaction,
        style: app_commands.Range[str, 1, MAX_MOOD_CHARS] | None = None,
    ) -> None:
        await self._restyle(interaction, mood=style or "")

    @dj_only
    @app_commands.command(name="radio_language", description="Set the language of the lyrics")
    @app_commands.describe(language="A language code such as en, ja, es")
    @app_commands.autocomplete(language=_languages)
    async def radio_language(self, interaction: discord.Interaction, language: str) -> None:
        await self._restyle(interaction, language=language)

    @dj_only
    @app_commands.command(name="radio_maxlength", description="Set the longest song the station makes, in seconds")
    @app_commands.describe(seconds="30 up to the server's limit (MAX_LENGTH_MAX)")
    async def radio_maxlength(
        self, interaction: discord.Interaction, seconds: app_commands.Range[int, 30, 600]
    ) -> None:
        await self._restyle(interaction, max_length=seconds)

    @dj_only
    @app_commands.command(name="radio_preset", description="Give the station a ready-made style")
    @app_commands.describe(name="A preset such as lofi, synthwave, jazz")
    @app_commands.autocomplete(name=_presets)
    async def radio_preset(self, interaction: discord.Interaction, name: str) -> None:
        station = await self._station(interaction)
        settings = await station.apply_preset(name)
        await answer(interaction, f"🎛️ Preset **{settings.preset}**: the station plays {style_line(settings)}.")

    @dj_only
    @app_commands.command(name="radio_pause", description="Pause the song playing now")
    async def radio_pause(self, interaction: discord.Interaction) -> None:
        station = self._playing_station(interaction)
        await defer(interaction)
        if (await station.status()).state == "paused":
            raise RadioError("The radio is paused already: /radio_resume plays on.")
        station.pause()
        await answer(interaction, "⏸️ Paused. /radio_resume plays on.")

    @dj_only
    @app_commands.command(name="radio_resume", description="Play on after /radio_pause")
    async def radio_resume(self, interaction: discord.Interaction) -> None:
        station = self._playing_station(interaction)
        await defer(interaction)
        if (await station.status()).state != "paused":
            raise RadioError("The radio is not paused.")
        station.resume()
        await answer(interaction, "▶️ Playing on.")

    def _playing_station(self, interaction: discord.Interaction) -> Station:
        guild_id = member_of(interaction).guild.id
        station = self.radio.known_station(guild_id)
        if station is None or not station.playing:
            raise RadioError("The radio is not playing: /radio_join starts it.")
        return station

    @dj_only
    @app_commands.command(name="radio_stop", description="Stop playing and cancel the waiting requests")
    async def radio_stop(self, interaction: discord.Interaction) -> None:
        station = self._playing_station(interaction)
        await defer(interaction)
        await station.stop()
        cancelled = await asyncio.to_thread(station.store.cancel_queued, station.guild_id, kind="request")
        await answer(
            interaction,
            f"⏹️ Stopped; {cancelled} waiting request(s) cancelled. Songs "
            "already made are kept. /radio_join starts again.",
        )

    @dj_only
    @app_commands.command(
        name="radio_settings",
        description="Show the station's settings, or change who is DJ and where now-playing messages go",
    )
    @app_commands.describe(
        dj_role="The role that may use the station commands (Manage Server to change it)",
        channel="The text channel for now-playing messages (Manage Server to change it)",
        taste="on: auto songs lean to what listeners like; off: they do not; reset: forget it",
        lyrics="clean: no swearing, sex, drugs, slurs or self-harm (Manage Server only)",
    )
    @app_commands.choices(taste=[app_commands.Choice(name=m, value=m) for m in TASTE_MODES])
    async def radio_settings(
        self,
        interaction: discord.Interaction,
        dj_role: discord.Role | None = None,
        channel: discord.TextChannel | None = None,
        taste: str | None = None,
        lyrics: Literal["clean", "explicit"] | None = None,
    ) -> None:
        if taste is not None and taste not in TASTE_MODES:
            raise RadioError(f"taste {safe(taste, 20)!r} is not allowed: give on, off or reset.")
        changing = dj_role is not None or channel is not None
        if changing and not has_manage_server(interaction.permissions):
            raise NotAllowedError(
                "Changing the DJ role or the now-playing channel needs the Manage Server "
                "permission: DJs may look at the settings, not decide who is DJ."
            )
        station = await self._station(interaction)
        if lyrics is not None:  # first: it may be refused, and then nothing is changed
            await set_lyrics_rating(interaction, station, lyrics)
        if taste is not None:
            await station.set_taste(taste)
        changes: dict[str, Any] = {}
        if dj_role is not None:
            if dj_role.is_default():
                raise RadioError("@everyone cannot be the DJ role: pick a role that only DJs have.")
            changes["dj_role_id"] = dj_role.id
        if channel is not None:
            changes["text_channel_id"] = channel.id
        settings = await station.update_settings(**changes) if changes else station.settings
        role = describe_dj_role(interaction.guild, settings.dj_role_id, self.bot.settings.dj_role)
        embed = settings_embed(settings, role, self.bot.settings.vote_skip_ratio, station.lyrics_rating)
        saved = changes or taste is not None or lyrics is not None
        await answer(interaction, "Settings saved." if saved else None, embed=embed)

    @dj_only
    @app_commands.command(name="radio_upload", description="Put your own audio file in the queue")
    @app_commands.describe(
        file="An audio file (mp3, ogg, opus, wav, flac, m4a, aac, webm)",
        title="The title to show (default: the file name)",
    )
    async def radio_upload(
        self,
        interaction: discord.Interaction,
        file: discord.Attachment,
        title: app_commands.Range[str, 1, MAX_TITLE] | None = None,
    ) -> None:
        member = member_of(interaction)
        max_bytes = self.bot.settings.upload_max_mb * 2**20
        check_attachment(file.filename, file.size, max_bytes)
        station = await self._station(interaction)
        try:
            data = await file.read()
        except discord.HTTPException as exc:
            raise RadioError(f"the file could not be downloaded from Discord ({exc.status}); try again.") from exc
        upload = await asyncio.to_thread(
            prepare_upload,
            data,
            file.filename,
            self.bot.settings.tracks_dir,
            max_bytes,
            station.settings.max_length,
        )
        name = listener_name(member)
        track = upload_track(upload, title or Path(file.filename).stem, name, station.settings.language)
        try:
            record = await station.add_upload(track, member.id, name, upload.seconds)
        except BaseException:  # refused (the queue is full) or failed: leave nothing behind
            await asyncio.to_thread(upload.path.unlink, missing_ok=True)
            raise
        await answer(
            interaction,
            f"📼 **{safe(record.title, 100)}** ({upload.duration:.0f} s) "
            "is in the queue, ahead of the station's own songs.",
        )


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(StationControl(bot))
