"""Files of a preprocessed dataset: atomic writes, checksums and the manifest.

A dataset folder holds one safetensors file per track and `manifest.json`:

    {"format": 1, "model": "...", "condition_dim": 2048, "latent_channels": 64,
     "latents_per_second": 25.0,
     "samples": [{"key": "album/song.flac", "file": "song-flac-1a2b3c4d.safetensors",
                  "sha256": "<of the tensor file>", "source": "<of audio+text+settings>",
                  "frames": 1500, "duration": 60.0, "text": {...}}],
     "problems": [{"key": "broken.mp3", "reason": "..."}]}

Every file is written to a temporary name and renamed into place, so an
interrupted run never leaves a half-written file under a real name; the
manifest is rewritten after each finished track, so a rerun skips what is done
(same `source` checksum and an intact tensor file) and redoes what changed.
Tensors are safetensors (no pickle), read with `safetensors.torch.load_file`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from engine.text_safety import slug

MANIFEST = "manifest.json"
FORMAT = 1
TENSOR_KEYS = (
    "target_latents",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "context_latents",
)


class DatasetFormatError(ValueError):
    """A dataset folder is missing, damaged or made for another model."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    with atomic_path(path) as temporary:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(temporary), metadata)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several kinds for damaged files
        raise DatasetFormatError(f"{path}: not a readable tensor file ({exc})") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def sample_file_name(key: str) -> str:
    """`album/Song 1.flac` -> `song-1-flac-<8 hex>.safetensors`: unique, filesystem-safe."""
    return f"{slug(Path(key).name, 48, 'track')}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.safetensors"


@dataclass
class Manifest:
    folder: Path
    model: str = ""
    condition_dim: int = 0
    latent_channels: int = 0
    latents_per_second: float = 0.0
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @classmethod
    def load(cls, folder: Path, *, missing_ok: bool = False) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            if missing_ok:
                return cls(Path(folder))
            raise DatasetFormatError(
                f"{folder} has no {MANIFEST}: it is not a preprocessed dataset. Make one with "
                "'train.py fixed --preprocess --audio-dir ... --tensor-output ...'"
            )
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            samples = {entry["key"]: entry for entry in data["samples"]}
            return cls(
                Path(folder),
                model=str(data.get("model", "")),
                condition_dim=int(data.get("condition_dim", 0)),
                latent_channels=int(data.get("latent_channels", 0)),
                latents_per_second=float(data.get("latents_per_second", 0.0)),
                samples=samples,
                problems=list(data.get("problems", [])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetFormatError(f"{path} is damaged ({exc}); preprocess again") from None

    def save(self) -> None:
        write_json(
            self.path,
            {
                "format": FORMAT,
                "model": self.model,
                "condition_dim": self.condition_dim,
                "latent_channels": self.latent_channels,
                "latents_per_second": self.latents_per_second,
                "samples": sorted(self.samples.values(), key=lambda entry: entry["key"]),
                "problems": self.problems,
            },
        )

    def is_current(self, key: str, source: str) -> bool:
        """Done before with the same inputs, and the tensor file is intact."""
        entry = self.samples.get(key)
        if entry is None or entry.get("source") != source:
            return False
        path = self.folder / entry["file"]
        return path.is_file() and file_sha256(path) == entry.get("sha256")
