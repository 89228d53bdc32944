"""The files a training run from the bot reads and writes: datasets, trainer presets,
the exported adapter. Disk I/O: call these in a thread. No discord import.

Refusals name what is allowed by its setting (`DATASETS_DIR`), never by the
host's path: they are shown in Discord.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.store_errors import InvalidValueError
from engine.settings import Settings

#: Audio the trainer reads (training.tracks); a dataset needs at least one such file.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif")
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def list_datasets(folder: Path) -> list[str]:
    """The dataset folders under DATASETS_DIR (names only)."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir() if p.is_dir() and _DATASET_NAME.fullmatch(p.name)
    )


def list_trainer_presets(settings: Settings) -> dict[str, str]:
    """Shipped and saved trainer presets: name -> description."""
    from training.presets import list_presets

    return list_presets(presets_dir(settings))


def presets_dir(settings: Settings) -> Path:
    return settings.data_dir / "training-presets"  # training.presets.user_presets_dir


def check_dataset(folder: Path, name: Any) -> Path:
    """The dataset folder `name` under `folder`, holding at least one audio file."""
    available = ", ".join(list_datasets(folder)) or "none yet: add a folder of audio files"
    allowed = f"a dataset folder in DATASETS_DIR: {available}"
    if not isinstance(name, str) or not _DATASET_NAME.fullmatch(name.strip()):
        raise InvalidValueError("dataset", name, allowed)
    path = folder / name.strip()
    if not path.is_dir():
        raise InvalidValueError("dataset", name, allowed)
    if not any(p.suffix.lower() in AUDIO_SUFFIXES for p in path.rglob("*") if p.is_file()):
        raise InvalidValueError(
            "dataset", name, f"a folder with audio files ({', '.join(AUDIO_SUFFIXES)})"
        )
    return path


def free_key(adapters_dir: Path, key: str, in_use: Callable[[str], bool]) -> str:
    """`key`, or when a station sings with that adapter now, the first `key-2`,
    `key-3`, ... that is neither in use nor taken: an adapter in use is never
    overwritten."""
    if not in_use(key):
        return key
    number = 2
    while in_use(f"{key}-{number}") or (adapters_dir / f"{key}-{number}").exists():
        number += 1
    return f"{key}-{number}"


def export_adapter(source: Path, target: Path) -> None:
    """Copy the trained adapter folder to `target`, replacing an older one whole.

    The copy goes to a hidden folder beside `target` first (hidden names are not
    adapters), so the worker never sees half an adapter. Files are copied, not
    `copy2`'d: a fresh modification time tells the worker to load it again."""
    if not source.is_dir():
        raise OSError(f"the trainer saved no adapter in {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(source, partial, copy_function=shutil.copyfile)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)
