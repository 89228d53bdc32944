"""Voice events: the radio follows who is listening (idle timer, reconnection)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord.ext import commands

if TYPE_CHECKING:
    from bot.app import RadioBot


class VoiceEvents(commands.Cog):
    def __init__(self, bot: RadioBot):
        self.bot = bot

    @commands.Cog.listener()
    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        radio = self.bot.radio_if_running
        if radio is not None:  # a voice event can still arrive while the bot closes
            radio.voice_state_changed(member, before, after)


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(VoiceEvents(bot))
