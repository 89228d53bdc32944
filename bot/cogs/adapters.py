"""Adapter commands: what a station sings with (DJs), and training new adapters
(Manage Server only: a run takes the GPU from every station of the bot).

`/radio_train` answers at once and then posts one progress message in the
channel, edited as the run goes (a channel message, not the interaction's
answer: an interaction can only be edited for 15 minutes, a run takes longer).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapter_library import list_adapters
from bot.choices import suggest
from bot.cogs.dj import station_command
from bot.cogs.listening import member_of
from bot.permissions import NotAllowedError, has_manage_server
from bot.radio import Radio
from bot.render import safe
from bot.replies import NO_MENTIONS, RadioError, answer, defer
from bot.store_checks import ADAPTER_NAME_RULE
from bot.training_runs import (
    MAX_EPOCHS,
    TrainingBusyError,
    TrainingProgress,
    TrainingRuns,
    list_datasets,
    list_trainer_presets,
)
from engine.jobs import MAX_ADAPTER_SCALE

if TYPE_CHECKING:
    from bot.app import RadioBot

log = logging.getLogger("bot.cogs.adapters")

OFF = "off"
DEFAULT_EPOCHS = 10


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


def training_text(progress: TrainingProgress) -> str:
    """One message about a run, as it stands."""
    icon = {"done": "✅", "stopped": "⏹️", "failed": "❌"}.get(progress.state, "🎓")
    name, dataset = safe(progress.name, 64), safe(progress.dataset, 64)
    lines = [f"{icon} Adapter **{name}** from dataset **{dataset}**: {safe(progress.message, 600)}"]
    if progress.total_steps:
        line = f"Step {progress.step}/{progress.total_steps}, "
        line += f"epoch {progress.epoch}/{progress.epochs}"
        if progress.loss is not None:
            line += f", loss {progress.loss:.4f}"
        if progress.eta_s is not None:
            line += f", about {math.ceil(progress.eta_s / 60)} min left"
        lines.append(line)
    if progress.adapter is not None:
        lines.append(f"Play it with `/radio_adapter name:{progress.adapter}`.")
    if not progress.finished and progress.pauses_songs:
        lines.append("Meanwhile the stations replay their libraries (no new songs).")
    return "\n".join(lines)


class Adapters(commands.Cog):
    def __init__(self, bot: RadioBot):
        self.bot = bot

    @property
    def radio(self) -> Radio:
        return self.bot.radio

    @property
    def training(self) -> TrainingRuns:
        return self.bot.training

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        member_of(interaction)
        name = interaction.command.name if interaction.command else ""
        if name.startswith("radio_train"):
            if not has_manage_server(interaction.permissions):
                raise NotAllowedError(
                    f"/{name} needs the Manage Server permission: training takes the GPU "
                    "from the radio for a while."
                )
        else:
            self.radio.require_dj(interaction)
        return True

    # --- autocomplete -------------------------------------------------------------
    async def _adapter_names(self, interaction: discord.Interaction, current: str):
        found = await asyncio.to_thread(list_adapters, self.bot.settings.adapters_dir)
        options = [(f"{OFF}: the base model", OFF)] + [(a.name, a.name) for a in found]
        return suggest(options, current)

    async def _dataset_names(self, interaction: discord.Interaction, current: str):
        found = await asyncio.to_thread(list_datasets, self.bot.settings.datasets_dir)
        return suggest(((name, name) for name in found), current)

    async def _preset_names(self, interaction: discord.Interaction, current: str):
        found = await asyncio.to_thread(list_trainer_presets, self.bot.settings)
        return suggest(((f"{n}: {d}" if d else n, n) for n, d in found.items()), current)

    # --- the station's adapter -------------------------------------------------------
    @station_command("radio_adapter", "Sing with a trained adapter (LoRA/LoKR), or off")
    @app_commands.describe(
        name="An adapter in the adapters folder, or 'off' for the base model",
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
        await answer(
            interaction,
            f"🎚️ The station sings with adapter **{safe(settings.adapter, 64)}** at scale "
            f"{settings.adapter_scale:g} from the next song it makes.",
        )

    @station_command("radio_adapters", "The adapters the station can sing with")
    async def radio_adapters(self, interaction: discord.Interaction) -> None:
        await defer(interaction)
        station = await self.radio.station(member_of(interaction).guild.id)
        found = await asyncio.to_thread(list_adapters, self.bot.settings.adapters_dir)
        active = station.settings.adapter
        lines = []
        active_mark = f" ← active (scale {station.settings.adapter_scale:g})"
        for entry in found:
            mark = active_mark if entry.name == active else ""
            lines.append(f"• **{safe(entry.name, 64)}** ({entry.kind}){mark}")
        if not lines:
            lines.append("No adapters yet: train one with /radio_train.")
        if active is None:
            lines.append("The station sings with the base model.")
        elif active not in {entry.name for entry in found}:
            lines.append(f"Active: **{safe(active, 64)}**, but its folder is gone.")
        await answer(interaction, "\n".join(lines))

    # --- training ----------------------------------------------------------------------
    @station_command("radio_train", "Train a new adapter on a dataset (Manage Server)")
    @app_commands.describe(
        dataset="A dataset folder (audio files) in the datasets folder",
        name=f"The new adapter's name: {ADAPTER_NAME_RULE}",
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
        board = _ProgressMessage(channel)
        try:
            progress = await self.training.start(
                dataset, name, preset=preset, epochs=epochs, on_progress=board.show
            )
        except TrainingBusyError as exc:
            raise RadioError(f"{exc}.") from None
        meanwhile = (
            "The stations replay their libraries until it ends"
            if progress.pauses_songs
            else "It has a GPU of its own: the stations sing on"
        )
        await answer(interaction, f"🎓 Training started. {meanwhile}; progress follows below.")
        await board.show(self.training.progress or progress)

    @station_command("radio_train_status", "How the adapter training is going")
    async def radio_train_status(self, interaction: discord.Interaction) -> None:
        progress = self.training.progress
        if progress is None:
            await answer(interaction, "No training has run since the bot started.", ephemeral=True)
            return
        await answer(interaction, training_text(progress), ephemeral=True)

    @station_command("radio_train_stop", "Stop the adapter training (it keeps what it learnt)")
    async def radio_train_stop(self, interaction: discord.Interaction) -> None:
        if not await self.training.stop():
            raise RadioError("No training is running.")
        await answer(interaction, "⏹️ Stopping after this step: the adapter is saved as it is.")


class _ProgressMessage:
    """One channel message per run, edited as it goes (best effort)."""

    def __init__(self, channel: discord.abc.Messageable):
        self.channel = channel
        self.message: discord.Message | None = None
        self._lock = asyncio.Lock()

    async def show(self, progress: TrainingProgress) -> None:
        text = training_text(progress)
        async with self._lock:
            try:
                if self.message is None:
                    self.message = await self.channel.send(text, allowed_mentions=NO_MENTIONS)
                else:
                    await self.message.edit(content=text)
            except discord.HTTPException as exc:
                log.warning("cannot show training progress: %s", exc)


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(Adapters(bot))
