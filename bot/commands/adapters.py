"""Adapter commands: what a station sings with (DJs) and sharing a server's adapter
with every server (the bot's owner; see bot.ownership). Training them:
bot.commands.training. Autocomplete suggests nothing to members who may not run the
command.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.adapter_library import key_name, list_adapters, share_adapter
from bot.choices import suggest
from bot.commands.common import RadioCog, member_of
from bot.permissions import bot_owner_only, dj_only
from bot.render import safe
from bot.replies import RadioError, answer, defer
from engine.worker.protocol import MAX_ADAPTER_SCALE

if TYPE_CHECKING:
    from bot.app import RadioBot

log = logging.getLogger("bot.commands.adapters")

OFF = "off"


def adapter_scale(value: object) -> float | None:
    """Discord does not enforce `Range`: check the scale here (None: keep it)."""
    if value is None:
        return None
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not (number and math.isfinite(value) and 0 <= value <= MAX_ADAPTER_SCALE):  # type: ignore[arg-type]
        shown = f"{value:g}" if number else repr(value)  # type: ignore[str-format]
        raise RadioError(f"scale {shown} is not allowed: give a number from 0 to {MAX_ADAPTER_SCALE:g}.")
    return float(value)  # type: ignore[arg-type]


class Adapters(RadioCog):
    # --- autocomplete: nothing for members who may not run the command ---------------
    async def _adapter_names(self, interaction: discord.Interaction, current: str):
        if interaction.guild_id is None or not await dj_only.allows(interaction):
            return []
        found = await asyncio.to_thread(list_adapters, self.bot.settings.adapters_dir, interaction.guild_id)
        options = [(f"{OFF}: the base model", OFF)] + [(a.name, a.name) for a in found]
        return suggest(options, current)

    async def _own_adapter_names(self, interaction: discord.Interaction, current: str):
        if interaction.guild_id is None or not await bot_owner_only.allows(interaction):
            return []
        found = await asyncio.to_thread(list_adapters, self.bot.settings.adapters_dir, interaction.guild_id)
        return suggest(((a.name, a.name) for a in found if a.owner is not None), current)

    # --- the station's adapter -------------------------------------------------------
    @dj_only
    @app_commands.command(name="radio_adapter", description="Sing with a trained adapter (LoRA/LoKR), or off")
    @app_commands.describe(
        name="This server's adapter or a shared one, or 'off' for the base model",
        scale="How strongly it applies, 0 to 4 (default: as before, 1 at first)",
    )
    @app_commands.autocomplete(name=_adapter_names)
    async def radio_adapter(
        self,
        interaction: discord.Interaction,
        name: str,
        scale: app_commands.Range[float, 0.0, MAX_ADAPTER_SCALE] | None = None,
    ) -> None:
        wanted = adapter_scale(scale)
        await defer(interaction)
        station = await self.radio.station(member_of(interaction).guild.id)
        if name.strip().casefold() == OFF:
            await station.set_adapter(None)
            await answer(interaction, "🎚️ The station sings with the base model from the next song.")
            return
        settings = await station.set_adapter(name, wanted)
        shown = safe(key_name(settings.adapter or ""), 64)
        await answer(
            interaction,
            f"🎚️ The station sings with adapter **{shown}** at scale "
            f"{settings.adapter_scale:g} from the next song it makes.",
        )

    @dj_only
    @app_commands.command(name="radio_adapters", description="The adapters the station can sing with")
    async def radio_adapters(self, interaction: discord.Interaction) -> None:
        await defer(interaction)
        guild_id = member_of(interaction).guild.id
        station = await self.radio.station(guild_id)
        found = await asyncio.to_thread(list_adapters, self.bot.settings.adapters_dir, guild_id)
        active = station.settings.adapter
        lines = []
        active_mark = f" ← active (scale {station.settings.adapter_scale:g})"
        for entry in found:
            mark = active_mark if entry.key == active else ""
            whose = "this server's" if entry.owner is not None else "shared"
            lines.append(f"• **{safe(entry.name, 64)}** ({entry.kind}, {whose}){mark}")
        if not lines:
            lines.append("No adapters yet: the bot's owner can train one with /radio_train.")
        if active is None:
            lines.append("The station sings with the base model.")
        elif active not in {entry.key for entry in found}:
            lines.append(f"Active: **{safe(key_name(active), 64)}**, but its folder is gone.")
        await answer(interaction, "\n".join(lines))

    @bot_owner_only
    @app_commands.command(
        name="radio_adapter_share", description="Share this server's adapter with every server (the bot's owner)"
    )
    @app_commands.describe(name="One of this server's own adapters")
    @app_commands.autocomplete(name=_own_adapter_names)
    async def radio_adapter_share(self, interaction: discord.Interaction, name: str) -> None:
        await defer(interaction, ephemeral=True)
        guild_id = member_of(interaction).guild.id
        entry = await asyncio.to_thread(share_adapter, self.bot.settings.adapters_dir, guild_id, name)
        await answer(
            interaction,
            f"🔗 Adapter **{safe(entry.name, 64)}** is shared: every server's DJs can now sing with it.",
            ephemeral=True,
        )


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(Adapters(bot))
