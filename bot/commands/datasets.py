"""`/radio_dataset`: training datasets made from Discord attachments.

`add` takes up to `MAX_FILES` audio attachments (with an optional caption and
lyrics for all of them), `list` and `show` say what there is, `remove` deletes
one of this server's, `preprocess` encodes it ahead of training (a run in the
training queue). For whoever may train (the bot's owner, admins of the
servers in TRAINING_GUILDS; bot.ownership). Each file is checked like an
upload before and after downloading (bot.datasets); a refused file is named
with the reason, the others are kept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.adapter_library import TRAINED_NAME_RULE
from bot.choices import suggest
from bot.commands.common import TrainerCog, listener_name, member_of
from bot.datasets import (
    AddResult,
    DatasetView,
    add_tracks,
    list_datasets,
    remove_dataset,
    show_dataset,
)
from bot.permissions import trainer_only
from bot.render import safe
from bot.replies import RadioError, answer, defer
from bot.store import InvalidValueError
from bot.training.request import RunRequest
from bot.uploads import UploadError, check_attachment
from engine.spec import MAX_CAPTION
from engine.text_safety import sanitize_text

if TYPE_CHECKING:
    from bot.app import RadioBot

log = logging.getLogger("bot.commands.datasets")

MAX_FILES = 10
MAX_LISTED = 25
LYRICS_LINE_BREAK = " / "


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{round(seconds % 60):02d}"


def view_text(view: DatasetView) -> str:
    whose = "this server's" if view.entry.owner is not None else "shared"
    lines = [
        f"📁 Dataset **{safe(view.entry.name, 64)}** ({whose}): {len(view.tracks)} "
        f"tracks, {minutes(view.seconds)} in all."
    ]
    for track in view.tracks[:MAX_LISTED]:
        line = f"• {safe(track.get('name') or track['file'], 80)}"
        if track.get("seconds") is not None:
            line += f" ({float(track['seconds']):.1f} s)"
        if track.get("caption"):
            line += f": {safe(track['caption'], 120)}"
        if track.get("lyrics"):
            line += " (with lyrics)"
        lines.append(line)
    if len(view.tracks) > MAX_LISTED:
        lines.append(f"… and {len(view.tracks) - MAX_LISTED} more.")
    if view.refused:
        lines.append("Refused when added:")
        lines += [f"• {safe(r.get('name'), 80)}: {safe(r.get('reason'), 200)}" for r in view.refused[-10:]]
    if view.problems:
        lines.append("Skipped by preprocessing:")
        lines += [f"• {safe(p.get('key'), 80)}: {safe(p.get('reason'), 200)}" for p in view.problems[:10]]
    ready = (
        f"{view.encoded} of {len(view.tracks)} tracks preprocessed"
        if view.encoded
        else ("not preprocessed yet (`/radio_dataset preprocess`, or /radio_train does it)")
    )
    lines.append(ready + ".")
    return "\n".join(lines)


class Datasets(TrainerCog):
    dataset = app_commands.Group(
        name="radio_dataset",
        description="Training datasets from audio attachments (the bot's owner)",
        guild_only=True,
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=trainer_only.default_permissions,
    )

    async def _names(self, interaction: discord.Interaction, current: str, own: bool):
        if interaction.guild_id is None or not await trainer_only.allows(interaction):
            return []
        found = await asyncio.to_thread(list_datasets, self.bot.settings.datasets_dir, interaction.guild_id)
        return suggest(((e.name, e.name) for e in found if e.owner or not own), current)

    async def _own_names(self, interaction: discord.Interaction, current: str):
        return await self._names(interaction, current, own=True)

    async def _all_names(self, interaction: discord.Interaction, current: str):
        return await self._names(interaction, current, own=False)

    @trainer_only
    @dataset.command(name="add", description="Add audio files to one of this server's datasets")
    @app_commands.describe(
        name=f"The dataset (made if new): {TRAINED_NAME_RULE}",
        file="An audio file (mp3, ogg, opus, wav, flac, m4a, aac, webm)",
        caption="What the music is (genre, instruments, mood), for every file of this add",
        lyrics="The words of every file of this add (' / ' between lines); none: instrumental",
    )
    @app_commands.autocomplete(name=_own_names)
    async def add(
        self,
        interaction: discord.Interaction,
        name: str,
        file: discord.Attachment,
        file2: discord.Attachment | None = None,
        file3: discord.Attachment | None = None,
        file4: discord.Attachment | None = None,
        file5: discord.Attachment | None = None,
        file6: discord.Attachment | None = None,
        file7: discord.Attachment | None = None,
        file8: discord.Attachment | None = None,
        file9: discord.Attachment | None = None,
        file10: discord.Attachment | None = None,
        caption: app_commands.Range[str, 1, MAX_CAPTION] | None = None,
        lyrics: app_commands.Range[str, 1, 4000] | None = None,
    ) -> None:
        member = member_of(interaction)
        await defer(interaction)
        attachments = [
            a for a in (file, file2, file3, file4, file5, file6, file7, file8, file9, file10) if a is not None
        ]
        max_bytes = self.bot.settings.upload_max_mb * 2**20
        downloaded: list[tuple[str, bytes]] = []
        refused: list[tuple[str, str]] = []
        for attachment in attachments:
            shown = sanitize_text(attachment.filename, 80) or "a file"
            try:
                check_attachment(attachment.filename, attachment.size, max_bytes)
                downloaded.append((attachment.filename, await attachment.read()))
            except UploadError as exc:
                refused.append((shown, str(exc).rstrip(".")))
            except discord.HTTPException as exc:
                refused.append((shown, f"it could not be downloaded from Discord ({exc.status})"))
        words = lyrics.replace(LYRICS_LINE_BREAK, "\n") if lyrics else None
        result = await asyncio.to_thread(self._add, member, name, downloaded, refused, caption, words)
        await answer(interaction, await self._added_text(member.guild.id, name, result))

    def _add(self, member, name, downloaded, refused, caption, lyrics) -> AddResult:
        return add_tracks(
            self.bot.settings,
            member.guild.id,
            name,
            downloaded,
            refused=refused,
            caption=caption,
            lyrics=lyrics,
            added_by=listener_name(member),
        )

    async def _added_text(self, guild_id: int, name: str, result: AddResult) -> str:
        lines = [f"📁 Dataset **{safe(name, 64)}**: {len(result.added)} track(s) added."]
        lines += [f"• {safe(t['name'], 80)} ({t['seconds']:.1f} s)" for t in result.added]
        if result.refused:
            lines.append(f"{len(result.refused)} refused:")
            lines += [f"• {safe(n, 80)}: {safe(why, 300)}" for n, why in result.refused]
        try:
            view = await asyncio.to_thread(show_dataset, self.bot.settings, guild_id, name)
        except InvalidValueError:  # nothing was added to a new dataset: it was not made
            return "\n".join(lines)
        where = safe(view.entry.name, 64)
        lines.append(
            f"It holds {len(view.tracks)} tracks, {minutes(view.seconds)} in all. "
            f"Train it with `/radio_train dataset:{where}`."
        )
        return "\n".join(lines)

    @trainer_only
    @dataset.command(name="list", description="The datasets this server may train on")
    async def list_(self, interaction: discord.Interaction) -> None:
        guild_id = member_of(interaction).guild.id
        found = await asyncio.to_thread(list_datasets, self.bot.settings.datasets_dir, guild_id)
        lines = [f"• **{safe(e.name, 64)}** ({'this server' if e.owner else 'shared'})" for e in found[:MAX_LISTED]]
        text = "\n".join(lines) or "No datasets yet: make one with `/radio_dataset add`."
        await answer(interaction, text, ephemeral=True)

    @trainer_only
    @dataset.command(name="show", description="A dataset's tracks, length, and what was skipped")
    @app_commands.autocomplete(name=_all_names)
    async def show(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = member_of(interaction).guild.id
        view = await asyncio.to_thread(show_dataset, self.bot.settings, guild_id, name)
        await answer(interaction, view_text(view), ephemeral=True)

    @trainer_only
    @dataset.command(name="remove", description="Delete one of this server's datasets")
    @app_commands.autocomplete(name=_own_names)
    async def remove(self, interaction: discord.Interaction, name: str) -> None:
        guild_id = member_of(interaction).guild.id
        if any(r.guild_id == guild_id and r.dataset == name.strip() for r in self.bot.training_queue.waiting):
            raise RadioError(
                f"Dataset {safe(name, 64)} is used by a run in line or running: "
                "stop that run first (/radio_train_stop)."
            )
        entry = await asyncio.to_thread(remove_dataset, self.bot.settings, guild_id, name)
        await answer(interaction, f"🗑️ Dataset **{safe(entry.name, 64)}** is deleted.")

    @trainer_only
    @dataset.command(name="preprocess", description="Encode a dataset now, ahead of training")
    @app_commands.autocomplete(name=_all_names)
    async def preprocess(self, interaction: discord.Interaction, name: str) -> None:
        member = member_of(interaction)
        await defer(interaction)
        request = RunRequest(
            guild_id=member.guild.id,
            dataset=name,
            name=name,
            kind="preprocess",
            channel_id=interaction.channel_id,
            user_id=member.id,
        )
        row = await self.bot.training_queue.submit(request)
        ahead = self.bot.training_queue.ahead_of(row.id)
        when = "now" if ahead == 0 else f"after the {ahead} run(s) ahead of it"
        dataset = safe(row.dataset, 64)
        await answer(interaction, f"📦 Run #{row.id} preprocesses dataset **{dataset}** {when}; progress follows here.")


async def setup(bot: RadioBot) -> None:
    await bot.add_cog(Datasets(bot))
