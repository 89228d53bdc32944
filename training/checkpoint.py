"""Training checkpoints: everything needed to continue exactly.

A checkpoint folder (`checkpoint-epoch-10/`, `checkpoint-step-1234/`, `final/`):

    adapter/              the adapter as the engine loads it (also what resume restores)
    training_state.pt     optimizer, scheduler, grad scaler, RNG states, step,
                          epoch and batch position, loss history
    config.json           the settings of the run
    dataset.json          the tracks it trained on, with their checksums
                          (training.resume refuses a dataset that changed)

It is written into a temporary folder and renamed, so a crash while saving
never leaves a half checkpoint under a real name. `training_state.pt` is read
with `torch.load(weights_only=True)`: plain tensors and numbers, no pickled code.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.export import read_adapter_state, read_info, write_adapter
from training.storage import write_json
from training.trainable_adapters import AdapterHandle

STATE_FILE = "training_state.pt"
ADAPTER_DIR = "adapter"
CONFIG_FILE = "config.json"
DATASET_FILE = "dataset.json"


@dataclass
class Position:
    """Where training is: optimizer steps done, and the next batch to read."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    history: list[list[float]] = field(default_factory=list)  # [step, loss]
    val_history: list[list[float]] = field(default_factory=list)  # [step, val loss]


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "objective": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["objective"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path,
    *,
    handle: AdapterHandle,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    position: Position,
    config: dict[str, Any],
    info: dict[str, Any],
    dataset: dict[str, Any] | None = None,
) -> Path:
    temporary = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write_adapter(handle, temporary / ADAPTER_DIR, info)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(generator),
                "step": position.step,
                "epoch": position.epoch,
                "batch": position.batch,
                "history": position.history,
                "val_history": position.val_history,
            },
            temporary / STATE_FILE,
        )
        write_json(temporary / CONFIG_FILE, config)
        if dataset is not None:
            write_json(temporary / DATASET_FILE, dataset)
        if folder.exists():
            shutil.rmtree(folder)
        temporary.rename(folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


def load_checkpoint(
    folder: Path,
    *,
    handle: AdapterHandle,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
) -> Position:
    """Restore everything `save_checkpoint` wrote; returns the position."""
    info = read_info(folder / ADAPTER_DIR)
    handle.load_state_dict(read_adapter_state(folder / ADAPTER_DIR, info["kind"]))
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"], generator)
    return Position(
        step=int(state["step"]),
        epoch=int(state["epoch"]),
        batch=int(state["batch"]),
        history=[list(map(float, row)) for row in state["history"]],
        val_history=[list(map(float, row)) for row in state["val_history"]],
    )
