"""Checks before anything is loaded or written: settings, device, dataset, checkpoint.

`train.py` runs them before it shows the summary, the wizard before it asks to
start, and `train()` before it creates the output folder. So a run that cannot
start (`--device cuda` on a machine without one, a folder that is not a
preprocessed dataset, a checkpoint of another adapter or of other data)
says so at once and leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from training.config import Command, TrainConfig
from training.devices import Runtime, resolve_runtime
from training.storage import DatasetFormatError, Manifest


def require_dataset(folder: Path) -> Manifest:
    """The manifest of a preprocessed dataset that holds at least one track (a
    Side-Step dataset is imported first, once: training.sidestep)."""
    from training.sidestep import training_folder

    manifest = Manifest.load(training_folder(folder))
    if not manifest.samples:
        raise DatasetFormatError(f"{folder} holds no preprocessed tracks: preprocess audio into it first")
    return manifest


def preflight(config: TrainConfig, command: Command) -> Runtime:
    """Raise what stops `command` from running (ConfigError for settings and the
    device, DatasetFormatError for the data); return the run's device and precision."""
    config.check(command)
    runtime = resolve_runtime(config.device, config.precision, config.attention_backend)
    if command == "estimate" or (command in ("fixed", "vanilla") and not config.preprocess):
        manifest = require_dataset(config.training_data_dir)
        if command != "estimate" and config.resume_from is not None:
            from training.resume import check_resume

            check_resume(config.resume_from, config.to_dict(), manifest)
    return runtime
