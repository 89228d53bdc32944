"""How a training run shows in Discord: one message, edited as the run goes.

It is a channel message, not the interaction's answer: an interaction can only
be edited for 15 minutes, a run takes longer. Every line goes through
`bot.render.safe`, so the trainer's own words (an error, its console) show
without mentions, links or host paths.
"""

from __future__ import annotations

import asyncio
import logging
import math

import discord

from bot.render import safe
from bot.replies import NO_MENTIONS
from bot.training_progress import TrainingProgress

log = logging.getLogger("bot.training_board")


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


class ProgressMessage:
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
