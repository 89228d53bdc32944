"""Folders as bytes: how adapters, datasets and trained adapters cross a Ray cluster.

Machines of a Ray cluster share no disk, so a folder travels as one blob
through Ray's object store: `pack_folder` makes an uncompressed tar of its
regular files (sorted, with fixed metadata, so the same content always gives
the same bytes) and names it by the SHA-256 of those bytes, its *content
hash*. `unpack_folder` writes a blob into a folder, replacing an older one
whole (written beside it first, so a reader never sees half a folder), and
refuses members that would land outside it.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import WorkerError


class BlobError(WorkerError, ValueError):
    """A folder cannot be packed, or a blob is not a folder this module packed."""


@dataclass(frozen=True)
class FolderBlob:
    """A packed folder and its content hash (hex SHA-256 of `data`)."""

    digest: str
    data: bytes


def pack_folder(folder: Path) -> FolderBlob:
    """Every regular file under `folder` (symbolic links are left out) as one blob."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BlobError(f"there is no folder {folder}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    data = buffer.getvalue()
    return FolderBlob(hashlib.sha256(data).hexdigest(), data)


def unpack_folder(data: bytes, target: Path) -> Path:
    """Write the blob's files into `target`, replacing what was there."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    partial.mkdir()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    raise BlobError(f"{member.name!r} is not a plain file")
                # Fresh modification times: a reader that watches them sees new content.
                tar.extract(member, partial, set_attrs=False, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise BlobError(f"not a packed folder: {exc}") from None
    except BlobError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
