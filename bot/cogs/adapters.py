"""Adapter commands: what a station sings with (DJs), training new adapters and
sharing them (the bot's owner, and admins of the servers in TRAINING_GUILDS:
a run takes the GPU from every server; see bot.ownership).

`/radio_train` answers at once and then posts one progress message in the
channel, edited as the run goes (bot.training_board). A run belongs to the
server it was started from: `/radio_train_status` and `/radio_train_stop`
show and stop it there only (and for the owner anywhere). Autocomplete
suggests nothing to members who may not run the command.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapter_library import TRAINED_NAME_RULE, key_name, list_adapters, share_adapter
from bot.choices import suggest
from bot.cogs.dj import station_command
from bot.cogs.listening import member_of
from bot.ownership import TrainingAccess
from bot.radio import Radio
from bot.render import safe
from bot.replies import RadioError, answer, defer
from bot.training_board import ProgressMessage, training_text
from bot.training_files import list_datasets, list_trainer_presets
from bot.training_runs import MAX_EPOCHS, TrainingBusyError, TrainingRuns
from engine.worker.protocol import MAX_ADAPTER_SCALE

if TYPE_CHECKING:
    from bot.app import RadioBot

log = logging.getLogger("bot.cogs.adapters")

OFF = "off"
DEFAULT_EPOCHS = 10
TRAINER_COMMANDS = ("radio_train", "radio_train_status", "radio_train_stop")
NO_RUN = "No training from this server is running or has run since the bot started."


def adapter_scale(value: object) -> float | None:
    """Discord does not enforce `Range`: check the scale here (None: keep it)."""
    if value is None:
        return None
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not (number and math.isfinite(value) and 0 <= value <= MAX_ADAPTER_SCALE):  # type: ignore[arg-type]
        shown = f"{value:g}" if number else repr(value)  # type: ignore[str-format]
        raise RadioError(
            f"scale {shown} is not allowed: give a number from 0 to {MAX_ADAPTER_SCALE:g}."
        )
    return float(value)  # type: ignore[arg-type]


class Adapters(commands.Cog):
    def __init__(self, bot: RadioBot):
        self.bot = bot

    @property
    def radio(self) -> Radio:
        return self.bot.radio

    @property
    def training(self) -> TrainingRuns:
        return self.bot.training

    @property
    def access(self) -> TrainingAccess:
        return self.bot.training_access

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        member_of(interaction)
        name = interaction.command.name if interaction.command else ""
        if name in TRAINER_COMMANDS:
            await self.access.require_trainer(interaction)
        elif name == "radio_adapter_share":
            await self.access.require_owner(interaction, "/radio_adapter_share")
        else:
            self.radio.require_dj(interaction)
        return True

    # --- autocomplete: nothing for members who may not run the command ---------------
    async def _adapter_names(self, interaction: discord.Interaction, current: str):
        if interaction.guild_id is None or not self.radio.is_dj(interaction):
            return []
        found = await asyncio.to_thread(
            list_adapters, self.bot.settings.adapters_dir, interaction.guild_id
        )
        options = [(f"{OFF}: the base model", OFF)] + [(a.name, a.name) for a in found]
        return suggest(options, current)

    async def _own_adapter_names(self, interaction: discord.Interaction, current: str):
        if interaction.guild_id is None or not await self.access.owners.is_owner(
            interaction.user.id
        ):
            return []
        found = await asyncio.to_thread(
            list_adapters, self.bot.settings.adapters_dir, interaction.guild_id
        )
        return suggest(((a.name, a.name) for a in found if a.owner is not None), current)

    async def _dataset_names(self, interaction: discord.Interaction, current: str):
        if not await self.access.may_train(interaction):
            return []
        found = await asyncio.to_thread(list_datasets, self.bot.settings.datasets_dir)
        return suggest(((name, name) for name in found), current)

    async def _preset_names(self, interaction: discord.Interaction, current: str):
        if not await self.access.may_train(interaction):
            return []
        found = await asyncio.to_thread(list_trainer_presets, self.bot.settings)
        return suggest(((f"{n}: {d}" if d else n, n) for n, d in found.items()), current)

    # --- the station's adapter -------------------------------------------------------
    @station_command("radio_adapter", "Sing with a trained adapter (LoRA/LoKR), or off")
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

    @station_command("radio_adapters", "The adapters the station can sing with")
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

    @station_command("radio_adapter_share", "Share this server's adapter with every server "
                                            "(the bot's owner)")  # fmt: skip
    @app_commands.describe(name="One of this server's own adapters")
    @app_commands.autocomplete(name=_own_adapter_names)
    async def radio_adapter_share(self, interaction: discord.Interaction, name: str) -> None:
        await defer(interaction, ephemeral=True)
        guild_id = member_of(interaction).guild.id
        entry = await asyncio.to_thread(
            share_adapter, self.bot.settings.adapters_dir, guild_id, name
        )
        await answer(interaction, f"🔗 Adapter **{safe(entry.name, 64)}** is shared: every "
                                  "server's DJs can now sing with it.", ephemeral=True)  # fmt: skip

    # --- training ----------------------------------------------------------------------
    @station_command("radio_train", "Train a new adapter on a dataset (the bot's owner)")
    @app_commands.describe(
        dataset="A dataset folder (audio files) in the datasets folder",
        name=f"The new adapter's name: {TRAINED_NAME_RULE}",
        preset="Trainer settings (VRAM profile); default: the trainer's defaults",
        epochs=f"Passes over the dataset, 1 to {MAX_EPOCHS} (default {DEFAULT_EPOCHS})",
    )
    @app_commands.autocomplete(dataset=_dataset_names, preset=_preset_names)
    async def radio_train(
        self,
        interaction: discord.Interaction,
        dataset: str,
        name: str,
        preset: str | None = None,
        epochs: app_commands.Range[int, 1, MAX_EPOCHS] = DEFAULT_EPOCHS,
    ) -> None:
        await defer(interaction)
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            raise RadioError("Run /radio_train in a text channel: progress is posted there.")
        board = ProgressMessage(channel)
        try:
            progress = await self.training.start(
                dataset, name, guild_id=member_of(interaction).guild.id,
                channel_id=interaction.channel_id, preset=preset, epochs=epochs,
                on_progress=board.show,
            )  # fmt: skip
        except TrainingBusyError as exc:
            raise RadioError(f"{exc}.") from None
        meanwhile = (
            "The stations replay their libraries until it ends"
            if progress.pauses_songs
            else "It has a GPU of its own: the stations sing on"
        )
        await answer(interaction, f"🎓 Training started. {meanwhile}; progress follows below.")
        await board.show(self.training.progress or progress)

    async def _own_run(self, interaction: discord.Interaction):
        """The current (or last) run, when this member may see it here; else None."""
        progress = self.training.progress
        if progress is None or not await self.access.controls_run(interaction, progress.guild_id):
            return None
        return progress

    @station_command("radio_train_status", "How this server's adapter training is going")
    async def radio_train_status(self, interaction: discord.Interaction) -> None:
        progress = await self._own_run(interaction)
        text = NO_RUN if progress is None else training_text(progress)
        await answer(interaction, text, ephemeral=True)

    @station_command("radio_train_stop", "Stop this server's adapter training (it keeps what "
                                         "it learnt)")  # fmt: skip
    async def radio_train_stop(self, interaction: discord.Interaction) -> None:
        progress = await self._own_run(interaction)
        if progress is None or progress.finished or not await self.training.stop():
            raise RadioError("No training from this server is running.")
        await answer(interaction, "⏹️ Stopping after this step: the adapter is saved as it is.")


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(Adapters(bot))
