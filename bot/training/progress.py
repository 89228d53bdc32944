"""Where a training run stands, as the bot shows it, and how the trainer's progress
events (training.progress) move it on. Plain data; no discord import."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

EXPORTING = "; exporting the adapter"
RunState = Literal["preparing", "training", "exporting", "done", "stopped", "failed"]
RunKind = Literal["train", "preprocess"]


@dataclass(frozen=True)
class Preview:
    """Before/after clips of one sample round: the same prompts sung by the base
    model alone (`before`) and with the adapter (`after`); paths in the run folder."""

    epoch: int
    final: bool
    prompts: tuple[str, ...]
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run stands; `message` says it in words (the end, or why it failed)."""

    name: str
    dataset: str
    preset: str | None
    guild_id: int = 0  # the server the run belongs to
    key: str | None = None  # its adapter's folder in ADAPTERS_DIR
    state: RunState = "preparing"
    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    lr: float | None = None
    eta_s: float | None = None
    message: str = "loading the model and preprocessing the dataset"
    adapter: str | None = None  # the name to play it by, once exported
    pauses_songs: bool = True  # False: it trains on a GPU of its own and the stations sing on
    result: Literal["done", "stopped"] | None = None  # how training ended, before the export
    started_at: float = field(default_factory=time.time)
    run_id: int | None = None  # its row in the store (bot.store.training)
    kind: RunKind = "train"
    previews: tuple[Preview, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "failed")


ProgressCallback = Callable[[TrainingProgress], Awaitable[None]]


def _preview(event: dict[str, Any]) -> Preview | None:
    before, after = event.get("base_paths"), event.get("paths")
    if not before or not after:
        return None
    return Preview(
        int(event.get("epoch", 0)),
        bool(event.get("final")),
        tuple(map(str, event.get("prompts") or ())),
        tuple(map(str, before)),
        tuple(map(str, after)),
    )


def _preprocessed(event: dict[str, Any]) -> str:
    problems = event.get("problems") or []
    text = f"preprocessed: {event.get('encoded', 0)} encoded, {event.get('unchanged', 0)} unchanged"
    if problems:
        skipped = "; ".join(f"{p.get('key')}: {p.get('reason')}" for p in problems[:5])
        text += f", {len(problems)} skipped ({skipped})"
    return text


def apply_event(progress: TrainingProgress, event: dict[str, Any]) -> TrainingProgress:
    """The progress after one trainer event (training.progress lists them)."""
    kind = event.get("event")
    if kind == "preprocess":
        what = f" ({event['key']}: {event.get('what')})" if event.get("key") else ""
        message = f"preprocessing the dataset: {event.get('done', 0)}/{event.get('total', 0)} "
        return replace(progress, message=f"{message}tracks{what}")
    if kind == "preprocessed":
        return replace(progress, state="exporting", result="done", message=_preprocessed(event))
    if kind == "start":
        return replace(
            progress,
            state="training",
            total_steps=event.get("total_steps"),
            epochs=event.get("epochs", progress.epochs),
            step=event.get("step", 0),
            message="training",
        )
    if kind == "step":
        return replace(
            progress,
            state="training",
            step=event.get("step", progress.step),
            total_steps=event.get("total_steps", progress.total_steps),
            epoch=event.get("epoch", progress.epoch),
            loss=event.get("loss"),
            lr=event.get("lr"),
            eta_s=event.get("eta_s"),
            message="training",
        )
    if kind == "sample":
        preview = _preview(event)
        if preview is None:
            return progress
        return replace(progress, previews=(*progress.previews, preview))
    if kind in ("done", "stopped"):
        why = f" ({event['reason']})" if event.get("reason") else ""
        ended = "finished" if kind == "done" else "stopped"
        return replace(
            progress,
            state="exporting",
            result=kind,
            eta_s=None,
            step=event.get("step", progress.step),
            epoch=event.get("epoch", progress.epoch),
            message=f"training {ended}{why}{EXPORTING}",
        )
    if kind == "error":
        return replace(progress, state="failed", eta_s=None, message=str(event.get("message", "the trainer failed")))
    return progress
