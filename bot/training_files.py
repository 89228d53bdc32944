"""The files a training run from the bot reads and writes: trainer presets and the
exported adapter (datasets: bot.datasets). Disk I/O: call these in a thread.
No discord import.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from engine.settings import Settings


def list_trainer_presets(settings: Settings) -> dict[str, str]:
    """Shipped and saved trainer presets: name -> description."""
    from training.presets import list_presets

    return list_presets(presets_dir(settings))


def presets_dir(settings: Settings) -> Path:
    return settings.data_dir / "training-presets"  # training.presets.user_presets_dir


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
