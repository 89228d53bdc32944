"""The files a training run from the bot reads and writes: trainer presets and the
exported adapter, and what a run's end says of them (datasets: bot.datasets). Disk I/O: call these in a thread.
No discord import.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from bot.adapter_library import key_name
from bot.settings import BotSettings
from engine.text_safety import hide_paths


def list_trainer_presets(settings: BotSettings) -> dict[str, str]:
    """Shipped and saved trainer presets: name -> description."""
    from training.presets import list_presets

    return list_presets(presets_dir(settings))


def presets_dir(settings: BotSettings) -> Path:
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


def renamed_note(wanted: str, key: str) -> str:
    """What a run's end message adds when the adapter was exported under another name."""
    if key == wanted:
        return ""
    return (
        f" as '{key_name(key)}': a station sings with '{key_name(wanted)}' now, and an adapter in use is never replaced"
    )


def console_tail(output_dir: Path, secrets: Iterable[str], chars: int = 300) -> str:
    """The end of the trainer's console, fit to show in Discord: no secrets, no paths."""
    try:
        text = (output_dir / "console.log").read_text(errors="replace").strip()
    except OSError:
        return "no console output"
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return hide_paths(text)[-chars:] or "no console output"
