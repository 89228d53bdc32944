"""How a training run shows in Discord: one message, edited as the run goes.

It is a channel message, not the interaction's answer: an interaction can only
be edited for 15 minutes, a run takes longer. It says the step, epoch, loss,
learning rate and time left, and carries the loss curve as a PNG, drawn again
at most every `image_seconds` (a new attachment per edit is heavy; Discord
allows a few edits per channel every few seconds, and the text is edited at
most once per progress poll). At the end it holds the final curve, a summary
and a button that puts the adapter on air (bot.training.buttons).

The before/after clips of a run (`--preview`: the same caption, lyrics and
seed, sung by the base model and with the adapter) are posted as audio
files as they come, read from the run's folder before it is removed.

Every line goes through `bot.render.safe`, so the trainer's own words (an
error, its console) show without mentions, links or host paths.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import discord

from bot.render import safe
from bot.replies import NO_MENTIONS
from bot.training.buttons import on_air_view
from bot.training.progress import Preview, TrainingProgress

log = logging.getLogger("bot.training.board")

#: Discord's attachment limit for bots in servers without boosts.
MAX_FILE_BYTES = 10 * 2**20
LossHistory = Callable[[], tuple[list[list[float]], list[list[float]]]]


def step_line(progress: TrainingProgress) -> str | None:
    if not progress.total_steps:
        return None
    line = f"Step {progress.step}/{progress.total_steps}, epoch {progress.epoch}/{progress.epochs}"
    if progress.loss is not None:
        line += f", loss {progress.loss:.4f}"
    if progress.lr is not None:
        line += f", lr {progress.lr:.2e}"
    if progress.eta_s is not None:
        line += f", about {math.ceil(progress.eta_s / 60)} min left"
    return line


def training_text(progress: TrainingProgress) -> str:
    """One message about a run, as it stands."""
    icon = {"done": "✅", "stopped": "⏹️", "failed": "❌"}.get(progress.state, "🎓")
    name, dataset = safe(progress.name, 64), safe(progress.dataset, 64)
    number = f" (run #{progress.run_id})" if progress.run_id is not None else ""
    if progress.kind == "preprocess":
        head = f"{icon} Dataset **{dataset}**{number}: {safe(progress.message, 600)}"
    else:
        head = f"{icon} Adapter **{name}** from dataset **{dataset}**{number}: {safe(progress.message, 600)}"
    lines = [head]
    line = step_line(progress)
    if line is not None:
        lines.append(line)
    if progress.adapter is not None:
        lines.append(f"Play it with `/radio_adapter name:{progress.adapter}` or the button below.")
    if not progress.finished and progress.pauses_songs:
        lines.append("Meanwhile the stations replay their libraries (no new songs).")
    return "\n".join(lines)


def loss_curve_file(history: list[list[float]], validation: list[list[float]]) -> discord.File:
    """The loss curve as a PNG attachment (blocking: matplotlib; call it in a thread)."""
    from training.metrics import loss_curve_png

    return discord.File(io.BytesIO(loss_curve_png(history, validation)), "loss_curve.png")


def preview_files(preview: Preview) -> tuple[list[discord.File], list[str]]:
    """The clips of a preview as attachments, and what could not be attached
    (blocking: reads the files; call it in a thread)."""
    files, missing = [], []
    for index, (before, after) in enumerate(zip(preview.before, preview.after, strict=False), 1):
        for label, path in (("before", before), ("after", after)):
            try:
                data = Path(path).read_bytes()
            except OSError:
                missing.append(f"{label} {index}: the clip is gone")
                continue
            if len(data) > MAX_FILE_BYTES:
                missing.append(f"{label} {index}: larger than Discord takes")
                continue
            files.append(discord.File(io.BytesIO(data), f"{label}-{index:02d}{Path(path).suffix}"))
    return files, missing


def preview_text(progress: TrainingProgress, preview: Preview) -> str:
    when = "at the end" if preview.final else f"after epoch {preview.epoch}"
    lines = [
        f"🎧 Adapter **{safe(progress.name, 64)}**, {when}: each prompt sung without the "
        "adapter (`before`) and with it (`after`), same caption, lyrics and seed."
    ]
    lines += [f"{i}. {safe(prompt, 200)}" for i, prompt in enumerate(preview.prompts, 1)]
    return "\n".join(lines)


class ProgressMessage:
    """One channel message per run, edited as it goes (best effort), and its previews."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        history: LossHistory | None = None,
        *,
        image_seconds: float = 30.0,
    ):
        self.channel = channel
        self.history = history
        self.image_seconds = image_seconds
        self.message: discord.Message | None = None
        self.previews_posted = 0
        self._image_at = -math.inf
        self._lock = asyncio.Lock()

    async def show(self, progress: TrainingProgress) -> None:
        async with self._lock:
            try:
                await self._post_previews(progress)
                await self._show(progress)
            except discord.HTTPException as exc:
                log.warning("cannot show training progress: %s", exc)

    async def _show(self, progress: TrainingProgress) -> None:
        kwargs: dict = {"content": training_text(progress)}
        curve = await self._curve(progress)
        if curve is not None:
            kwargs["attachments" if self.message is not None else "file"] = (
                [curve] if self.message is not None else curve
            )
        if progress.finished and progress.adapter is not None and progress.key is not None:
            kwargs["view"] = on_air_view(progress.key)
        if self.message is None:
            self.message = await self.channel.send(allowed_mentions=NO_MENTIONS, **kwargs)
        else:
            await self.message.edit(**kwargs)

    async def _curve(self, progress: TrainingProgress) -> discord.File | None:
        """The loss curve when one is due: at the end, else every `image_seconds`."""
        if self.history is None or progress.kind != "train":
            return None
        history, validation = self.history()
        now = time.monotonic()
        due = progress.finished or now - self._image_at >= self.image_seconds
        if not history or not due:
            return None
        self._image_at = now
        return await asyncio.to_thread(loss_curve_file, list(history), list(validation))

    async def _post_previews(self, progress: TrainingProgress) -> None:
        for preview in progress.previews[self.previews_posted :]:
            self.previews_posted += 1
            files, missing = await asyncio.to_thread(preview_files, preview)
            text = preview_text(progress, preview)
            if missing:
                text += "\nNot attached: " + "; ".join(missing)
            await self.channel.send(text, files=files, allowed_mentions=NO_MENTIONS)
