"""What several cogs share, so that no cog imports another: the member behind an
interaction, the name stored with a request, the base of the cogs that work on the
stations (with the guild's aired station) and of the trainers' cogs. Who may run a
command is declared at the command with a level of bot.permissions (`@dj_only`,
`@trainer_only`, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.ownership import TrainingAccess
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


class RadioCog(commands.Cog):
    """The base of the cogs whose commands work on the radio's stations."""

    def __init__(self, bot: RadioBot):
        self.bot = bot

    @property
    def radio(self) -> Radio:
        return self.bot.radio

    def aired_station(self, guild_id: int) -> Station:
        """The guild's station; a refusal when the radio was never on air there."""
        station = self.radio.known_station(guild_id)
        if station is None:
            raise RadioError("The radio has not been on air here yet: join a voice channel and run /radio_join.")
        return station


class TrainerCog(commands.Cog):
    """The base of the cogs whose commands are `@trainer_only` (bot.ownership)."""

    def __init__(self, bot: RadioBot):
        self.bot = bot

    @property
    def access(self) -> TrainingAccess:
        return self.bot.training_access
