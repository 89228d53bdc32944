"""Training checkpoints: everything needed to continue exactly.

A checkpoint folder (`checkpoint-epoch-10/`, `checkpoint-step-1234/`, `final/`):

    adapter/              the adapter as the engine loads it (also what resume restores)
    training_state.pt     optimizer, scheduler, grad scaler, RNG states, step,
                          epoch and batch position, loss history
    config.json           the settings of the run

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

from training.adapters import AdapterHandle
from training.config import ConfigError
from training.export import read_adapter_state, read_info, write_adapter
from training.storage import write_json

STATE_FILE = "training_state.pt"
ADAPTER_DIR = "adapter"
#: Settings that must match between a checkpoint and the run resuming it.
MUST_MATCH = ("adapter_type", "rank", "alpha", "attention_type", "target_modules", "bias",
              "lokr_linear_dim", "lokr_linear_alpha", "lokr_factor", "lokr_decompose_both",
              "lokr_use_tucker", "lokr_use_scalar", "lokr_weight_decompose", "mode",
              "batch_size", "gradient_accumulation", "seed", "val_split")  # fmt: skip


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
        write_json(temporary / "config.json", config)
        if folder.exists():
            shutil.rmtree(folder)
        temporary.rename(folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


def check_resumable(folder: Path, config: dict[str, Any]) -> None:
    """A checkpoint can continue this run only with the same adapter and data order."""
    import json

    if not (folder / STATE_FILE).is_file() or not (folder / ADAPTER_DIR).is_dir():
        raise ConfigError(
            [
                f"--resume-from {folder}: not a training checkpoint (expected {STATE_FILE} and "
                f"{ADAPTER_DIR}/ inside; use a checkpoint-epoch-N, checkpoint-step-N or final "
                "folder of a previous run)"
            ]
        )
    saved = json.loads((folder / "config.json").read_text())
    different = [
        f"--{k.replace('_', '-')} was {saved.get(k)!r}, now {config.get(k)!r}"
        for k in MUST_MATCH
        if saved.get(k) != config.get(k)
    ]
    if different:
        raise ConfigError(
            [f"--resume-from {folder}: the run must keep its settings: " + "; ".join(different)]
        )


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
