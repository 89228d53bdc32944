"""The adapters a station may sing with: the subfolders of ADAPTERS_DIR.

Each adapter is a folder `ADAPTERS_DIR/<name>/` as the trainer exports it (or
as a user copies one in): diffusers LoRA, PEFT LoRA or LyCORIS LoKR weights,
plus `adapter_info.json` when the trainer wrote it. The bot only looks at the
folder names and the weights file; the worker loads the weights. Reading a
folder is disk I/O: the cogs call these through `asyncio.to_thread`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.store_checks import check_adapter_name
from bot.store_errors import InvalidValueError
from engine.adapters import AdapterError, find_weights_file

INFO_FILE = "adapter_info.json"  # training.export.INFO_FILE


@dataclass(frozen=True)
class AdapterEntry:
    name: str
    weights: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.info.get("kind", "lokr" if "lokr" in self.weights.name else "lora"))


def _entry(folder: Path) -> AdapterEntry | None:
    """The adapter in `folder`, or None when it holds no weights file."""
    try:
        weights = find_weights_file(folder)
    except AdapterError:
        return None
    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError):
        info = {}
    return AdapterEntry(folder.name, weights, info if isinstance(info, dict) else {})


def list_adapters(folder: Path) -> list[AdapterEntry]:
    """Every adapter under `folder` whose name is allowed, by name."""
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        try:
            check_adapter_name(child.name)
        except InvalidValueError:
            continue
        entry = _entry(child) if child.is_dir() else None
        if entry is not None:
            found.append(entry)
    return found


def require_adapter(folder: Path, name: Any) -> AdapterEntry:
    """The adapter `name` under `folder`; `InvalidValueError` naming what exists otherwise."""
    name = check_adapter_name(name.strip() if isinstance(name, str) else name)
    entry = _entry(folder / name) if (folder / name).is_dir() else None
    if entry is None:
        names = ", ".join(a.name for a in list_adapters(folder)) or "none yet (/radio_train)"
        raise InvalidValueError("adapter", name, f"an adapter in {folder}: {names}")
    return entry
