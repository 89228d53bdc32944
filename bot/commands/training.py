"""Training commands: `/radio_train`, `/radio_train_status`, `/radio_train_stop`.

For the bot's owner and the admins of the servers in TRAINING_GUILDS (a run
takes the GPU from every server; bot.ownership). `/radio_train` puts a run in
line (bot.training.queue) and answers at once with its place; when the run
starts, one progress message in the channel is edited as it goes, with its
loss curve, and its before/after clips follow (bot.training.board). A run
belongs to the server it was started from: status and stop are for that
server (and for the owner anywhere). Autocomplete suggests nothing to members
who may not run the command.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.adapter_library import TRAINED_NAME_RULE
from bot.choices import suggest
from bot.commands.common import TrainerCog, member_of
from bot.datasets import list_datasets
from bot.permissions import trainer_only
from bot.replies import RadioError, answer, defer
from bot.store import TrainingRunRow
from bot.training.files import list_trainer_presets
from bot.training.queue import TrainingQueue
from bot.training.request import MAX_EPOCHS, RunRequest
from bot.training.status import run_title, status_text

if TYPE_CHECKING:
    from bot.app import RadioBot

log = logging.getLogger("bot.commands.training")

DEFAULT_EPOCHS = 10
RECENT_RUNS = 5
_RUN = re.compile(r"#?([0-9]{1,12})")


def run_number(value: object) -> int:
    """`#12` or `12` (Discord does not check option values)."""
    match = _RUN.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise RadioError(
            f"run {str(value)[:30]!r} is not a run: give its number, e.g. #12 (/radio_train_status lists them)."
        )
    return int(match.group(1))


class Training(TrainerCog):
    @property
    def queue(self) -> TrainingQueue:
        return self.bot.training_queue

    # --- autocomplete: nothing for members who may not run the command ---------------
    async def _dataset_names(self, interaction: discord.Interaction, current: str):
        if interaction.guild_id is None or not await trainer_only.allows(interaction):
            return []
        found = await asyncio.to_thread(list_datasets, self.bot.settings.datasets_dir, interaction.guild_id)
        return suggest(((entry.name, entry.name) for entry in found), current)

    async def _preset_names(self, interaction: discord.Interaction, current: str):
        if not await trainer_only.allows(interaction):
            return []
        found = await asyncio.to_thread(list_trainer_presets, self.bot.settings)
        return suggest(((f"{n}: {d}" if d else n, n) for n, d in found.items()), current)

    async def _run_numbers(self, interaction: discord.Interaction, current: str):
        if not await trainer_only.allows(interaction):
            return []
        owner = await self.access.owners.is_owner(interaction.user.id)
        rows = [r for r in self.queue.waiting if owner or r.guild_id == interaction.guild_id]
        return suggest(((f"{run_title(r)} ({r.state})".replace("**", ""), f"#{r.id}") for r in rows), current)

    # --- commands -------------------------------------------------------------------
    @trainer_only
    @app_commands.command(name="radio_train", description="Train a new adapter on a dataset (the bot's owner)")
    @app_commands.describe(
        dataset="A dataset of this server (/radio_dataset) or of the datasets folder",
        name=f"The new adapter's name: {TRAINED_NAME_RULE}",
        preset="Trainer settings (VRAM profile); default: the trainer's defaults",
        epochs=f"Passes over the dataset, 1 to {MAX_EPOCHS} (default {DEFAULT_EPOCHS})",
        preview_every="Also post before/after clips every N epochs (default 0: at the end only)",
    )
    @app_commands.autocomplete(dataset=_dataset_names, preset=_preset_names)
    async def radio_train(
        self,
        interaction: discord.Interaction,
        dataset: str,
        name: str,
        preset: str | None = None,
        epochs: app_commands.Range[int, 1, MAX_EPOCHS] = DEFAULT_EPOCHS,
        preview_every: app_commands.Range[int, 0, MAX_EPOCHS] = 0,
    ) -> None:
        await defer(interaction)
        if not isinstance(interaction.channel, discord.abc.Messageable):
            raise RadioError("Run /radio_train in a text channel: progress is posted there.")
        request = RunRequest(
            guild_id=member_of(interaction).guild.id,
            dataset=dataset,
            name=name,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            preset=preset,
            epochs=epochs,
            preview_every=preview_every,
        )
        row = await self.queue.submit(request)
        await answer(interaction, self._placed(row))

    def _placed(self, row: TrainingRunRow) -> str:
        progress = self.bot.training.progress
        if progress is not None and progress.run_id == row.id:
            meanwhile = (
                "The stations replay their libraries until it ends"
                if progress.pauses_songs
                else "It has a GPU of its own: the stations sing on"
            )
            return f"🎓 Training started (run #{row.id}). {meanwhile}; progress follows below."
        ahead = self.queue.ahead_of(row.id)
        runs = "run is" if ahead == 1 else "runs are"
        return (
            f"⏳ Run #{row.id} waits in line: {ahead} {runs} ahead of it. Its progress "
            "follows here when it starts; `/radio_train_status` shows the line, "
            f"`/radio_train_stop run:#{row.id}` takes it out."
        )

    @trainer_only
    @app_commands.command(name="radio_train_status", description="This server's training runs: now, in line, last")
    async def radio_train_status(self, interaction: discord.Interaction) -> None:
        guild_id = member_of(interaction).guild.id
        everyone = await self.access.owners.is_owner(interaction.user.id)
        recent = await asyncio.to_thread(
            self.bot.stations.store.recent_training_runs,
            None if everyone else guild_id,
            RECENT_RUNS,
        )
        text = status_text(self.bot.training.progress, self.queue.waiting, recent, guild_id, everyone=everyone)
        await answer(interaction, text, ephemeral=True)

    @trainer_only
    @app_commands.command(
        name="radio_train_stop", description="Stop a training run (it keeps what it learnt) or take it out of line"
    )
    @app_commands.describe(run="The run's number (default: this server's running run)")
    @app_commands.autocomplete(run=_run_numbers)
    async def radio_train_stop(self, interaction: discord.Interaction, run: str | None = None):
        guild_id = member_of(interaction).guild.id
        row = await self._target(interaction, guild_id, run)
        outcome = await self.queue.cancel(row.id)
        if outcome == "cancelled":
            text = f"🚫 {run_title(row)} is out of line: it will not run."
        else:
            text = f"⏹️ Stopping {run_title(row)} after this step: what it learnt is saved."
        await answer(interaction, text)

    async def _target(self, interaction: discord.Interaction, guild_id: int, run: str | None) -> TrainingRunRow:
        """The run to stop: the one named (if this member controls it), else this
        server's running run, else its first in line."""
        none = RadioError("No training from this server is running or waiting.")
        if run is None:
            rows = [r for r in self.queue.waiting if r.guild_id == guild_id]
            if not rows:
                raise none
            return rows[0]
        number = run_number(run)
        row = next((r for r in self.queue.waiting if r.id == number), None)
        if row is None or not await self.access.controls_run(interaction, row.guild_id):
            raise RadioError(
                f"Run #{number} is not one of this server's running or waiting runs (/radio_train_status lists them)."
            )
        return row


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(Training(bot))
