"""The adapters a station may sing with: the subfolders of ADAPTERS_DIR.

Each adapter is a folder as the trainer exports it (or as the bot's operator
copies one in): diffusers LoRA, PEFT LoRA or LyCORIS LoKR weights, plus
`adapter_info.json` when the trainer wrote it. The bot only looks at the
folder names and the weights file; the worker loads the weights. Reading a
folder is disk I/O: the cogs call these through `asyncio.to_thread`.

Whose adapter it is. The library is shared by every server the bot is in, so
an adapter trained from a server belongs to that server: its folder is
`ADAPTERS_DIR/g<server id>-<name>/`, only that server sees and uses it, and
two servers may each train a `my-band` without touching the other's. Every
other folder (`ADAPTERS_DIR/<name>/`: copied in by the operator, or shared by
the bot's owner with `/radio_adapter_share`) is shared: every server may use
it. The folder name is the adapter's *key*: what the station stores and the
worker loads. People see only the name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.store import InvalidValueError, check_adapter_name
from engine.adapters.manager import AdapterError, find_weights_file

INFO_FILE = "adapter_info.json"  # training.export.INFO_FILE
#: A server's own adapter: `g<server id>-<name>`.
_SERVER_KEY = re.compile(r"g([1-9][0-9]{0,19})-(.+)")
#: Longest name of a trained adapter: its key (`g` + id + `-` + name) must fit in 64.
MAX_TRAINED_NAME = 40
TRAINED_NAME_RULE = f"1-{MAX_TRAINED_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit"


def server_key(guild_id: int, name: str) -> str:
    """The folder of server `guild_id`'s own adapter `name`."""
    return f"g{guild_id}-{name}"


def key_owner(key: str) -> int | None:
    """The server an adapter key belongs to, or None for a shared adapter."""
    match = _SERVER_KEY.fullmatch(key)
    return int(match.group(1)) if match else None


def key_name(key: str) -> str:
    """The name people see: the key without its server."""
    match = _SERVER_KEY.fullmatch(key)
    return match.group(2) if match else key


def check_trained_name(value: Any) -> str:
    """A name for a new adapter trained from a server."""
    name = check_adapter_name(value.strip() if isinstance(value, str) else value)
    if len(name) > MAX_TRAINED_NAME:
        raise InvalidValueError("adapter", value, f"a name of {TRAINED_NAME_RULE}")
    return name


class KeyedEntry:
    """A library folder named by its key: `g<server id>-<name>` (a server's) or `<name>`
    (shared). Adapters here, datasets in bot.datasets."""

    key: str

    @property
    def name(self) -> str:
        return key_name(self.key)

    @property
    def owner(self) -> int | None:
        """The server it belongs to; None: shared."""
        return key_owner(self.key)


@dataclass(frozen=True)
class AdapterEntry(KeyedEntry):
    key: str  # the folder name in ADAPTERS_DIR
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


def list_adapters(folder: Path, guild_id: int | None = None) -> list[AdapterEntry]:
    """The adapters server `guild_id` may use: its own first, then the shared ones,
    each by name. With `guild_id=None`: every adapter of every server."""
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        try:
            check_adapter_name(child.name)
        except InvalidValueError:
            continue
        owner = key_owner(child.name)
        if guild_id is not None and owner not in (None, guild_id):
            continue
        entry = _entry(child) if child.is_dir() else None
        if entry is not None:
            found.append(entry)
    return sorted(found, key=lambda entry: (entry.owner is None, entry.name))


def require_adapter(folder: Path, name: Any, guild_id: int) -> AdapterEntry:
    """Server `guild_id`'s adapter `name` (its own first, else a shared one);
    `InvalidValueError` naming those it may use otherwise."""
    name = check_adapter_name(name.strip() if isinstance(name, str) else name)
    for key in (server_key(guild_id, name), name):
        owner = key_owner(key)
        if owner not in (None, guild_id) or not (folder / key).is_dir():
            continue
        entry = _entry(folder / key)
        if entry is not None:
            return entry
    names = ", ".join(a.name for a in list_adapters(folder, guild_id)) or "none yet (/radio_train)"
    raise InvalidValueError("adapter", name, f"an adapter of this server or a shared one: {names}")


def share_adapter(folder: Path, guild_id: int, name: Any) -> AdapterEntry:
    """Copy server `guild_id`'s own adapter `name` into the shared library (the
    owner's `/radio_adapter_share`). The server keeps its own; nothing is replaced:
    a shared adapter of that name already there is refused."""
    from bot.training.files import export_adapter

    name = check_adapter_name(name.strip() if isinstance(name, str) else name)
    own = [entry for entry in list_adapters(folder, guild_id) if entry.owner == guild_id]
    source = next((entry for entry in own if entry.name == name), None)
    if source is None:
        names = ", ".join(entry.name for entry in own) or "none yet (/radio_train)"
        raise InvalidValueError("adapter", name, f"one of this server's own adapters: {names}")
    if key_owner(name) is not None or (folder / name).exists():
        raise InvalidValueError("adapter", name, "a name no shared adapter has yet (shared ones are never replaced)")
    export_adapter(folder / source.key, folder / name)
    entry = _entry(folder / name)
    assert entry is not None
    return entry
