"""`--resume-from`: a checkpoint's own settings, and the same data it trained on.

A checkpoint keeps the run's settings (`config.json`) and the tracks it
trained on with their checksums (`dataset.json`). Resuming:

- takes its settings from the checkpoint: `train.py fixed --resume-from
  out/checkpoint-epoch-10` needs nothing else (`saved_settings`); flags given
  on the command line win where they may differ (paths, logging, samples,
  `--epochs`), and those that define the adapter or the data order must stay
  as they were (`MUST_MATCH`: refused, naming each);
- refuses a dataset that changed since the checkpoint (tracks added, removed or
  preprocessed again): the data order and the schedule would silently differ
  from the run it continues. `--force-resume` continues anyway.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from training.checkpoint import ADAPTER_DIR, CONFIG_FILE, DATASET_FILE, STATE_FILE
from training.config import ConfigError, flag
from training.storage import Manifest

log = logging.getLogger(__name__)

#: Settings that must match between a checkpoint and the run resuming it.
MUST_MATCH = (
    "adapter_type",
    "rank",
    "alpha",
    "attention_type",
    "target_modules",
    "bias",
    "lokr_linear_dim",
    "lokr_linear_alpha",
    "lokr_factor",
    "lokr_decompose_both",
    "lokr_use_tucker",
    "lokr_use_scalar",
    "lokr_weight_decompose",
    "mode",
    "batch_size",
    "gradient_accumulation",
    "seed",
    "val_split",
)
#: Settings of one invocation, never taken from a checkpoint.
NOT_RESUMED = ("resume_from", "force_resume")


def _require_checkpoint(folder: Path) -> None:
    if not (folder / STATE_FILE).is_file() or not (folder / ADAPTER_DIR).is_dir():
        raise ConfigError(
            [
                f"--resume-from {folder}: not a training checkpoint (expected {STATE_FILE} and "
                f"{ADAPTER_DIR}/ inside; use a checkpoint-epoch-N, checkpoint-step-N or final "
                "folder of a previous run)"
            ]
        )


def saved_settings(folder: Path) -> dict[str, Any]:
    """The settings a checkpoint was trained with, as `TrainConfig` fields."""
    _require_checkpoint(folder)
    try:
        saved = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError([f"--resume-from {folder}: its {CONFIG_FILE} is unreadable ({exc})"]) from None
    if not isinstance(saved, dict):
        raise ConfigError([f"--resume-from {folder}: its {CONFIG_FILE} is not a settings object"])
    return {k: v for k, v in saved.items() if k not in NOT_RESUMED}


def check_resumable(folder: Path, config: dict[str, Any]) -> None:
    """A checkpoint can continue this run only with the same adapter and data order."""
    saved = saved_settings(folder)
    different = [
        f"{flag(k)} was {saved.get(k)!r}, now {config.get(k)!r}" for k in MUST_MATCH if saved.get(k) != config.get(k)
    ]
    if different:
        raise ConfigError([f"--resume-from {folder}: the run must keep its settings: " + "; ".join(different)])


def dataset_record(manifest: Manifest) -> dict[str, Any]:
    """What a checkpoint remembers of its dataset: each track's tensor checksum."""
    return {"tracks": {key: entry.get("sha256") for key, entry in manifest.samples.items()}}


def dataset_changes(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """How two dataset records differ, in words; None when they are the same."""
    old, new = before.get("tracks", {}), after.get("tracks", {})
    counts = (
        (len(new.keys() - old.keys()), "added"),
        (len(old.keys() - new.keys()), "removed"),
        (sum(1 for k in old.keys() & new.keys() if old[k] != new[k]), "preprocessed again"),
    )
    parts = [f"{n} track{'s' if n != 1 else ''} {what}" for n, what in counts if n]
    return ", ".join(parts) or None


def check_same_dataset(folder: Path, manifest: Manifest, force: bool) -> None:
    """Refuse (unless `force`) to resume from `folder` on a dataset that changed."""
    path = folder / DATASET_FILE
    if not path.is_file():
        log.warning("%s records no dataset (an older checkpoint): not checked", folder)
        return
    changes = dataset_changes(json.loads(path.read_text()), dataset_record(manifest))
    if changes is None:
        return
    if force:
        log.warning("Resuming on a changed dataset (%s), as --force-resume asks", changes)
        return
    raise ConfigError(
        [
            f"--resume-from {folder}: the dataset changed since this checkpoint ({changes}): "
            "the data order and the schedule would differ from the run it continues. Resume "
            "on the same data, or pass --force-resume to continue anyway"
        ]
    )


def check_resume(folder: Path, config: dict[str, Any], manifest: Manifest) -> None:
    """Both checks of a resume: the same settings and the same data."""
    check_resumable(folder, config)
    check_same_dataset(folder, manifest, bool(config.get("force_resume")))
