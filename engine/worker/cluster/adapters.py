"""The bot's adapters in Ray's object store, by content hash (no shared disk needed).

A job that sings with adapter `name` carries `(name, digest, [ref])`: the
folder `ADAPTERS_DIR/<name>/` packed by `engine.worker.cluster.blobs`, its SHA-256 and
the object holding it. The folder is packed and put once; it is packed again
only when a file in it changed (size or modification time), and put again only
when that changed its content hash, so a song worker that already holds the
adapter fetches nothing (`engine.worker.cluster.actor`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import ray

from engine.adapters.manager import AdapterError
from engine.worker.cluster.blobs import BlobError, pack_folder

log = logging.getLogger("engine.worker.cluster.adapters")

Stamp = tuple[tuple[str, int, int], ...]


class AdapterShelf:
    """Adapters of `folder`, put in the object store on first use."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._held: dict[str, tuple[Stamp, str, Any]] = {}  # name -> stamp, digest, ref

    async def reference(self, name: str) -> tuple[str, str, list[Any]]:
        """`(name, digest, [ref])` for a job; `AdapterError` names what is wrong."""
        return await asyncio.to_thread(self._reference, name)

    def _reference(self, name: str) -> tuple[str, str, list[Any]]:
        folder = self.folder / name
        with self._lock:
            stamp = _stamp(name, folder)
            held = self._held.get(name)
            if held is not None and held[0] == stamp:
                return name, held[1], [held[2]]
            try:
                blob = pack_folder(folder)
            except (BlobError, OSError) as exc:
                raise AdapterError(f"adapter '{name}': cannot read {folder}: {exc}") from None
            if held is not None and held[1] == blob.digest:
                ref = held[2]
            else:
                ref = ray.put(blob.data)
                log.info("adapter '%s' (%s, %d bytes) is in the object store", name, blob.digest[:12], len(blob.data))
            self._held[name] = (stamp, blob.digest, ref)
            return name, blob.digest, [ref]


def _stamp(name: str, folder: Path) -> Stamp:
    if not folder.is_dir():
        raise AdapterError(f"adapter '{name}': there is no folder {folder}")
    try:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        stats = [(p.relative_to(folder).as_posix(), p.stat()) for p in files]
    except OSError as exc:
        raise AdapterError(f"adapter '{name}': cannot read {folder}: {exc}") from None
    if not stats:
        raise AdapterError(f"adapter '{name}': the folder {folder} is empty")
    return tuple((path, st.st_size, st.st_mtime_ns) for path, st in stats)
