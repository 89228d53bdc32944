"""Training datasets: folders of audio in DATASETS_DIR, and those made from Discord.

A dataset made with `/radio_dataset add` belongs to the server it was made in:
its folder is `DATASETS_DIR/g<server id>-<name>/` (named as adapters are, see
bot.adapter_library), and only that server sees it, trains on it, shows and
removes it. A folder the operator puts there under any other name is shared:
every server that may train sees it, and nobody removes it from Discord.

Each added file is checked like an upload (engine.audio_import: real audio of
the format its name says, never a playlist; at most UPLOAD_MAX_MB as Discord
reports it; `MIN_SECONDS` to DATASET_MAX_SECONDS long, decoded to the end) and
stored losslessly as FLAC, 48 kHz stereo, numbered (`003-my-song.flac`), with
the caption and lyrics given beside it as upstream sidecars
(`003-my-song.caption.txt`, `.lyrics.txt`), which the trainer reads. What was
added, by whom, and what was refused and why are kept in the folder's
`.radio-dataset.json`. A dataset holds at most DATASET_MAX_TRACKS tracks, a
server at most `MAX_DATASETS_PER_SERVER` datasets.

A dataset's preprocessed tensors live in `DATA_DIR/dataset-tensors/<folder>/`,
so the next run on it encodes only what changed (training.preprocess), and
`show` reports what preprocessing skipped and why from its manifest.

Everything here blocks (files, ffmpeg): call it in a thread. Refusals and
listings never show a host path. No discord import.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.adapter_library import (
    MAX_TRAINED_NAME,
    TRAINED_NAME_RULE,
    KeyedEntry,
    key_owner,
)
from bot.adapter_library import server_key as dataset_key
from bot.settings import BotSettings
from bot.store import InvalidValueError
from engine.audio_import import ImportRefused, import_audio
from engine.spec import MAX_CAPTION, MAX_LYRICS
from engine.text_safety import sanitize_text, slug

#: The trainer's own shortest track (training.audio_io).
MIN_SECONDS = 0.5
MAX_DATASETS_PER_SERVER = 10
INDEX_FILE = ".radio-dataset.json"
TENSORS_FOLDER = "dataset-tensors"
KEPT_REFUSALS = 20
#: Audio the trainer reads (training.audio_io); a shared dataset needs one such file.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_lock = threading.Lock()  # one add or remove at a time: numbering and the index


@dataclass(frozen=True)
class DatasetEntry(KeyedEntry):
    key: str  # the folder name in DATASETS_DIR; shared: the operator's folder
    path: Path


@dataclass
class AddResult:
    added: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)


@dataclass(frozen=True)
class DatasetView:
    entry: DatasetEntry
    tracks: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    problems: list[dict[str, Any]]  # what preprocessing skipped, and why
    encoded: int  # tracks with tensors ready

    @property
    def seconds(self) -> float:
        return sum(float(track.get("seconds", 0.0)) for track in self.tracks)


def check_dataset_name(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else value
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_TRAINED_NAME:
        raise InvalidValueError("dataset", value, f"a name of {TRAINED_NAME_RULE}")
    return name


def tensors_dir(settings: BotSettings, entry: DatasetEntry) -> Path:
    """Where the dataset's preprocessed tensors are kept between runs."""
    return settings.data_dir / TENSORS_FOLDER / entry.key


def _has_audio(folder: Path) -> bool:
    return any(p.suffix.lower() in AUDIO_SUFFIXES for p in folder.rglob("*") if p.is_file())


def list_datasets(folder: Path, guild_id: int) -> list[DatasetEntry]:
    """The datasets server `guild_id` may train on: its own first, then the shared ones."""
    if not folder.is_dir():
        return []
    found = [
        DatasetEntry(child.name, child)
        for child in sorted(folder.iterdir())
        if child.is_dir() and _FOLDER.fullmatch(child.name) and key_owner(child.name) in (None, guild_id)
    ]
    return sorted(found, key=lambda entry: (entry.owner is None, entry.name))


def find_dataset(folder: Path, guild_id: int, name: Any) -> DatasetEntry:
    """Server `guild_id`'s dataset `name` (its own, else a shared one) holding audio."""
    available = [entry.name for entry in list_datasets(folder, guild_id)]
    allowed = "a dataset of this server (/radio_dataset add) or in DATASETS_DIR: " + (
        ", ".join(available) or "none yet"
    )
    try:
        name = check_dataset_name(name)
    except InvalidValueError:
        raise InvalidValueError("dataset", name, allowed) from None
    for key in (dataset_key(guild_id, name), name):
        path = folder / key
        if key_owner(key) in (None, guild_id) and path.is_dir():
            if not _has_audio(path):
                raise InvalidValueError("dataset", name, f"a dataset with audio files ({', '.join(AUDIO_SUFFIXES)})")
            return DatasetEntry(key, path)
    raise InvalidValueError("dataset", name, allowed)


def _read_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return {"tracks": [], "refused": []}
    return data if isinstance(data, dict) else {"tracks": [], "refused": []}


def _write_index(path: Path, index: dict[str, Any]) -> None:
    partial = path / f"{INDEX_FILE}.partial"
    partial.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n")
    partial.replace(path / INDEX_FILE)


def add_tracks(
    settings: BotSettings,
    guild_id: int,
    name: Any,
    files: list[tuple[str, bytes]],
    *,
    refused: Sequence[tuple[str, str]] = (),
    caption: str | None = None,
    lyrics: str | None = None,
    added_by: str = "",
) -> AddResult:
    """Add downloaded `files` (name, bytes) to server `guild_id`'s dataset `name`,
    creating it; `refused` are files already turned down before downloading."""
    name = check_dataset_name(name)
    key = dataset_key(guild_id, name)
    entry = DatasetEntry(key, settings.datasets_dir / key)
    result = AddResult(refused=list(refused))
    caption = sanitize_text(caption or "", MAX_CAPTION) or None
    lyrics = sanitize_text(lyrics or "", MAX_LYRICS, multiline=True) or None
    with _lock:
        if not entry.path.is_dir():
            own = [e for e in list_datasets(settings.datasets_dir, guild_id) if e.owner]
            if len(own) >= MAX_DATASETS_PER_SERVER:
                raise InvalidValueError(
                    "dataset",
                    name,
                    f"one of this server's {MAX_DATASETS_PER_SERVER} datasets "
                    f"({', '.join(e.name for e in own)}): remove one first",
                )
            entry.path.mkdir(parents=True)
        index = _read_index(entry.path)
        for filename, data in files:
            shown = sanitize_text(filename, 80) or "a file"
            if len(index["tracks"]) >= settings.dataset_max_tracks:
                full = f"the dataset is full: at most {settings.dataset_max_tracks} tracks"
                result.refused.append((shown, f"{full} (DATASET_MAX_TRACKS)"))
                continue
            number = max((int(t["file"][:3]) for t in index["tracks"]), default=0) + 1
            stem = f"{number:03d}-{slug(Path(filename).stem, 40, 'track')}"
            try:
                audio = import_audio(
                    data,
                    Path(filename).suffix,
                    entry.path,
                    stem,
                    min_seconds=MIN_SECONDS,
                    max_seconds=settings.dataset_max_seconds,
                    output=".flac",
                )
            except ImportRefused as exc:
                result.refused.append((shown, str(exc)))
                continue
            if caption:
                (entry.path / f"{stem}.caption.txt").write_text(caption + "\n")
            if lyrics:
                (entry.path / f"{stem}.lyrics.txt").write_text(lyrics + "\n")
            track = {
                "file": audio.path.name,
                "name": shown,
                "seconds": round(audio.duration, 2),
                "caption": caption,
                "lyrics": bool(lyrics),
                "added_by": sanitize_text(added_by, 64),
                "added_at": time.time(),
            }
            index["tracks"].append(track)
            result.added.append(track)
        stamp = time.time()
        index["refused"] = (index["refused"] + [{"name": n, "reason": r, "at": stamp} for n, r in result.refused])[
            -KEPT_REFUSALS:
        ]
        _write_index(entry.path, index)
        if not index["tracks"]:
            shutil.rmtree(entry.path, ignore_errors=True)  # nothing was added to a new one
    return result


def own_dataset(settings: BotSettings, guild_id: int, name: Any) -> DatasetEntry:
    """Server `guild_id`'s own dataset `name` (not a shared one)."""
    name = check_dataset_name(name)
    key = dataset_key(guild_id, name)
    if not (settings.datasets_dir / key).is_dir():
        own = [e.name for e in list_datasets(settings.datasets_dir, guild_id) if e.owner]
        raise InvalidValueError("dataset", name, "one of this server's datasets: " + (", ".join(own) or "none yet"))
    return DatasetEntry(key, settings.datasets_dir / key)


def remove_dataset(settings: BotSettings, guild_id: int, name: Any) -> DatasetEntry:
    """Delete server `guild_id`'s own dataset `name` and its preprocessed tensors."""
    with _lock:
        entry = own_dataset(settings, guild_id, name)
        shutil.rmtree(entry.path)
        shutil.rmtree(tensors_dir(settings, entry), ignore_errors=True)
    return entry


def show_dataset(settings: BotSettings, guild_id: int, name: Any) -> DatasetView:
    """What a dataset holds: tracks, what was refused, what preprocessing skipped."""
    entry = find_dataset(settings.datasets_dir, guild_id, name)
    index = _read_index(entry.path)
    tracks = index["tracks"]
    if not tracks:  # a shared folder: its audio files, lengths unknown until preprocessed
        tracks = [
            {"file": p.name, "name": p.name}
            for p in sorted(entry.path.rglob("*"))
            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
        ]
    problems, encoded = [], 0
    manifest = tensors_dir(settings, entry) / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
        problems = list(data.get("problems", []))
        encoded = len(data.get("samples", []))
        lengths = {s["key"]: s.get("duration") for s in data.get("samples", [])}
        for track in tracks:
            if "seconds" not in track and lengths.get(track["file"]) is not None:
                track["seconds"] = lengths[track["file"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return DatasetView(entry, tracks, list(index["refused"]), problems, encoded)
