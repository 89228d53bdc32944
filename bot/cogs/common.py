"""What several cogs share, so that no cog imports another: the member behind an
interaction, the name stored with a request, the guild's aired station, the
decorator of the DJ commands and the base of the trainers' cogs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.ownership import TrainingAccess
from bot.permissions import DJ_PERMISSIONS
from bot.radio import Radio
from bot.replies import RadioError
from bot.station import Station
from engine.text_safety import sanitize_text

if TYPE_CHECKING:
    from bot.app import RadioBot


def member_of(interaction: discord.Interaction) -> discord.Member:
    if not isinstance(interaction.user, discord.Member) or interaction.guild is None:
        raise RadioError("The radio's commands work in a server, not in direct messages.")
    return interaction.user


def listener_name(member: discord.Member) -> str:
    """The name stored with a request (shown later, so made safe now)."""
    return sanitize_text(member.display_name, 100) or f"listener {member.id}"


def aired_station(radio: Radio, guild_id: int) -> Station:
    """The guild's station; a refusal when the radio was never on air there."""
    station = radio.known_station(guild_id)
    if station is None:
        raise RadioError("The radio has not been on air here yet: join a voice channel and run /radio_join.")
    return station


def station_command(name: str, description: str) -> Callable[[Any], app_commands.Command]:
    """A slash command for DJs: hidden from members without Manage Server, guild only."""

    def decorate(func: Any) -> Any:
        command = app_commands.command(name=name, description=description)(func)
        command = app_commands.guild_only()(command)
        return app_commands.default_permissions(DJ_PERMISSIONS)(command)

    return decorate


class TrainerCog(commands.Cog):
    """Commands for whoever may train here (bot.ownership), in a server only."""

    def __init__(self, bot: RadioBot):
        self.bot = bot

    @property
    def access(self) -> TrainingAccess:
        return self.bot.training_access

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        member_of(interaction)
        await self.access.require_trainer(interaction)
        return True
