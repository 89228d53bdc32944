"""Answering interactions: defer, answer, refuse, and the command tree's error handler.

Discord waits 3 s for the first answer. Commands that touch the station
`defer()` first (a "thinking..." message), then answer with a follow-up.
Refusals are ephemeral (only the member sees them) and say what was wrong
and what is allowed; after a public deferral the "thinking" message is
deleted first, so the refusal can be private.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord
from discord import app_commands

from bot.store import StoreError
from engine.text_safety import hide_paths, sanitize_text

log = logging.getLogger("bot.replies")

NO_MENTIONS = discord.AllowedMentions.none()


class RadioError(app_commands.AppCommandError):
    """A refusal shown to the member as it is."""


async def defer(interaction: discord.Interaction, *, ephemeral: bool = False) -> None:
    """Acknowledge now (within Discord's 3 s); answer later with `answer`."""
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)


async def answer(
    interaction: discord.Interaction,
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    ephemeral: bool = False,
) -> None:
    """The answer: the first response, or the follow-up after `defer`."""
    kwargs: dict[str, Any] = {"ephemeral": ephemeral, "allowed_mentions": NO_MENTIONS}
    if content is not None:
        kwargs["content"] = content
    if embed is not None:
        kwargs["embed"] = embed
    if interaction.response.is_done():
        await interaction.followup.send(**kwargs)
    else:
        await interaction.response.send_message(**kwargs)


async def refuse(interaction: discord.Interaction, message: str) -> None:
    """Tell only this member what was wrong (and what is allowed)."""
    text = f"⚠️ {hide_paths(message)}"
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        return
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


def explain(error: app_commands.AppCommandError) -> str | None:
    """The member-facing text for `error`, or None for a bug (to log)."""
    cause: BaseException = error
    if isinstance(error, app_commands.CommandInvokeError):
        cause = error.original
    if isinstance(cause, RadioError | StoreError | app_commands.CheckFailure):
        if isinstance(cause, app_commands.NoPrivateMessage):
            return "The radio's commands work in a server, not in direct messages."
        return str(cause) or "You cannot use this command here."
    if isinstance(cause, app_commands.TransformerError):
        return f"{_shown(cause.value)} cannot be used here: give {_expected(cause)}."
    if isinstance(cause, app_commands.CommandSignatureMismatch | app_commands.CommandNotFound):
        return "This command changed since Discord last loaded it; try again in a minute."
    return None


def _shown(value: object) -> str:
    """A value Discord could not convert, as a member reads it (never a Python repr)."""
    name = getattr(value, "name", None)
    if isinstance(name, str):
        kind = getattr(value, "type", None)
        shown = f"#{sanitize_text(name, 60)}"
        if isinstance(kind, discord.ChannelType):
            shown += f" (a {kind.name} channel)"
        return shown
    return f"'{sanitize_text(str(value), 40)}'"


def _expected(error: app_commands.TransformerError) -> str:
    types = getattr(error.transformer, "channel_types", None)
    if types:
        return " or ".join(f"a {kind.name} channel" for kind in types)
    return f"a {error.type.name}"


async def on_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """The command tree's error handler: explain refusals, log bugs."""
    message = explain(error)
    if message is None:
        name = interaction.command.name if interaction.command else "?"
        log.error("/%s failed", name, exc_info=getattr(error, "original", error))
        message = "Something went wrong on the radio's side; the details are in the bot's log."
    try:
        await refuse(interaction, message)
    except discord.HTTPException as exc:
        log.warning("cannot answer an interaction with an error: %s", exc)
