"""Adapters by name for the worker: loaded from `ADAPTERS_DIR/<name>/` on first use.

Each job names the adapter it is sung with (or none). `AdapterCache.use`
loads the named folder the first time, keeps it loaded (switching is then
instant) and makes it the active adapter at the job's scale. At most
`max_loaded` adapters stay loaded (`WORKER_MAX_ADAPTERS`): loading one more
unloads the one used longest ago, so many servers' adapters cannot fill the
worker's memory. A folder whose
weights file changed since it was loaded (an adapter trained again under the
same name) is loaded again. A restarted worker starts with an empty cache and
simply loads again on demand.

Anything wrong with an adapter (no such folder, no weights, unreadable file,
matches no layer) raises `AdapterError` with a message naming the adapter; the
engine stays as it was, so the worker fails that one job and sings on.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from engine.adapters.manager import AdapterError, find_weights_file
from engine.worker.protocol import ADAPTER_NAME_PATTERN

log = logging.getLogger("engine.adapters.cache")

_NAME = re.compile(ADAPTER_NAME_PATTERN)


class AdapterCache:
    """The adapters of one engine, by folder name under `folder`."""

    def __init__(self, engine: Any, folder: Path, max_loaded: int = 4):
        if max_loaded < 1:
            raise ValueError(f"max_loaded={max_loaded}: allowed is 1 or more")
        self.engine = engine
        self.folder = Path(folder)
        self.max_loaded = max_loaded
        # name -> (weights file, mtime_ns), least recently used first
        self._stamps: OrderedDict[str, tuple[Path, int]] = OrderedDict()

    @property
    def loaded(self) -> list[str]:
        """The adapters loaded now, least recently used first."""
        return list(self._stamps)

    def use(self, name: str | None, scale: float = 1.0) -> None:
        """Sing the next song with adapter `name` at `scale`; None: the base model."""
        if name is None:
            self.engine.switch_adapter(None)
            return
        if not _NAME.fullmatch(name):
            raise AdapterError(f"adapter name {name!r} is not allowed")
        stamp = self._stamp(name)
        if self._stamps.get(name) != stamp:
            self._load(name, stamp)
        self._stamps.move_to_end(name)
        self.engine.switch_adapter(name, scale)

    def _stamp(self, name: str) -> tuple[Path, int]:
        folder = self.folder / name
        if not folder.is_dir():
            raise AdapterError(f"adapter '{name}': there is no folder {folder}")
        try:
            weights = find_weights_file(folder)
            return weights, weights.stat().st_mtime_ns
        except AdapterError as exc:
            raise AdapterError(f"adapter '{name}': {exc}") from None
        except OSError as exc:
            raise AdapterError(f"adapter '{name}': cannot read {folder}: {exc}") from None

    def _load(self, name: str, stamp: tuple[Path, int]) -> None:
        if name in self._stamps:
            log.info("adapter '%s' changed on disk: loading it again", name)
            self.engine.unload_adapter(name)
            del self._stamps[name]
        try:
            self.engine.load_adapter(self.folder / name, name=name)
        except AdapterError as exc:
            message = str(exc)
            if f"'{name}'" not in message:
                message = f"adapter '{name}': {message}"
            raise AdapterError(message) from None
        self._stamps[name] = stamp
        # Only after a good load: a broken adapter leaves the loaded ones as they were.
        while len(self._stamps) > self.max_loaded:
            oldest, _ = self._stamps.popitem(last=False)
            log.info("adapter '%s' unloaded: at most %d stay loaded", oldest, self.max_loaded)
            self.engine.unload_adapter(oldest)
