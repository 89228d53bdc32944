"""What a training run from Discord is: the request, checked, as the trainer's config.

`RunRequest` is what `/radio_train` (or `/radio_dataset preprocess`) asked for.
`check_request` checks every value (the dataset is this server's or a shared
one, with audio; the adapter name's rule, and no station sings with it now; a
trainer preset; 1 to `MAX_EPOCHS` epochs; a preview interval) and names what
is allowed; `build_run` turns it into the `TrainConfig` of the run and its
first progress. Blocking (files): call these in a thread. No discord import.

A run preprocesses its dataset first, into the dataset's own tensor folder
(bot.datasets.tensors_dir), so the next run on it encodes only what changed.
A training run makes before/after previews at its end (`--preview`), and every
`preview_every` epochs when asked. A preprocess run writes only tensors; its
progress, log and stop files go to its run folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bot.adapter_library import check_trained_name, server_key
from bot.datasets import find_dataset, tensors_dir
from bot.settings import BotSettings
from bot.store import InvalidValueError, check_int
from bot.training.files import list_trainer_presets, presets_dir
from bot.training.progress import RunKind, TrainingProgress
from bot.training.record import RUNS_FOLDER

MAX_EPOCHS = 1000


@dataclass(frozen=True)
class RunRequest:
    guild_id: int
    dataset: str
    name: str  # the adapter's name; for a preprocess run, the dataset's
    kind: RunKind = "train"
    channel_id: int | None = None
    user_id: int = 0
    preset: str | None = None
    epochs: int = 10
    preview_every: int = 0  # 0: a preview at the end only
    run_id: int | None = None  # its row in the store


def check_request(settings: BotSettings, request: RunRequest, in_use: Callable[[str], bool]) -> RunRequest:
    """The request with its names cleaned up; `InvalidValueError` for a bad value."""
    entry = find_dataset(settings.datasets_dir, request.guild_id, request.dataset)
    if request.kind == "preprocess":
        return replace(request, dataset=entry.name, name=entry.name, epochs=0, preset=None)
    name = check_trained_name(request.name)
    check_int("epochs", request.epochs, 1, MAX_EPOCHS)
    check_int("preview_every", request.preview_every, 0, request.epochs)
    if in_use(server_key(request.guild_id, name)):
        raise InvalidValueError(
            "adapter",
            name,
            "a name no station sings with now: this server's station "
            "uses that adapter; switch it off (/radio_adapter name:off) or pick another name",
        )
    if request.preset is not None:
        preset = request.preset.strip()
        if preset not in list_trainer_presets(settings):
            names = ", ".join(list_trainer_presets(settings))
            raise InvalidValueError("preset", request.preset, f"one of {names}")
        request = replace(request, preset=preset)
    return replace(request, dataset=entry.name, name=name)


def build_run(
    settings: BotSettings,
    request: RunRequest,
    in_use: Callable[[str], bool],
    overrides: dict[str, Any],
) -> tuple[Any, TrainingProgress]:
    """The checked `TrainConfig` of a run, and its first progress."""
    from training.config import ConfigError, TrainConfig
    from training.presets import load_preset

    request = check_request(settings, request, in_use)
    entry = find_dataset(settings.datasets_dir, request.guild_id, request.dataset)
    key = server_key(request.guild_id, request.name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = settings.data_dir / RUNS_FOLDER / f"{key}-{request.kind}-{stamp}"
    values: dict[str, Any] = {}
    if request.preset is not None:
        try:
            values = load_preset(request.preset, presets_dir(settings))
        except ConfigError as exc:
            raise InvalidValueError("preset", request.preset, "; ".join(exc.lines)) from None
    where: dict[str, Any] = {
        "checkpoint_dir": settings.checkpoint_dir,
        "preprocess": True,
        "audio_dir": entry.path,
        "tensor_output": tensors_dir(settings, entry),
    }
    if request.kind == "preprocess":
        where |= {
            "progress_file": folder / "progress.jsonl",
            "stop_file": folder / "STOP",
            "log_file": folder / "train.log",
        }
        run = {"epochs": 1}
    else:
        where["output_dir"] = folder
        run = {"epochs": request.epochs, "preview": True, "sample_every_n_epochs": request.preview_every}
    config = TrainConfig(**{"device": settings.device, **values, **where})
    config = config.replace(**{**run, **overrides})
    try:
        config.check("preprocess" if request.kind == "preprocess" else "fixed")
    except ConfigError as exc:
        raise InvalidValueError("training settings", request.preset or "default", "; ".join(exc.lines)) from None
    progress = TrainingProgress(
        request.name,
        entry.name,
        request.preset,
        guild_id=request.guild_id,
        key=key,
        epochs=request.epochs,
        run_id=request.run_id,
        kind=request.kind,
        message="loading the model and preprocessing the dataset",
    )
    return config, progress
