"""Decoded waveforms -> finished track files and their `Track` records."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from engine import audio
from engine.song_batch import cut_to_length
from engine.spec import SongSpec, Track
from engine.text_safety import slug


def track_file_name(spec: SongSpec, seed: int, suffix: str) -> str:
    """`20261121-093000-rainy-night-in-tokyo-1234-5f3a9c.ogg`: sortable, safe on any
    filesystem, and unique: the same song and seed made twice (e.g. with and without an
    adapter) never overwrites the first file."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug(spec.title)}-{seed}-{secrets.token_hex(3)}.{suffix}"


def numbered_paths(out_path: Path, count: int) -> list[Path]:
    """`song.wav`, `song-2.wav`, `song-3.wav`, ...: the files of a batch named by its first."""
    out_path = Path(out_path)
    return [out_path] + [out_path.with_name(f"{out_path.stem}-{i + 1}{out_path.suffix}") for i in range(1, count)]


def anti_clip(wave: np.ndarray) -> np.ndarray:
    """Scale down a waveform whose peak exceeds full scale (the pipeline's own rule)."""
    peak = float(np.abs(wave).max(initial=0.0))
    return wave / peak if peak > 1.0 else wave


@dataclass(frozen=True)
class BatchOutput:
    """What one pipeline call made, shared by every track of its batch."""

    waveforms: torch.Tensor  # [batch, channels, samples], float32 on the CPU
    sample_rate: int
    stage_seconds: dict[str, float]  # text, dit, vae
    peak_memory_mb: float | None
    settings: dict[str, object]
    warnings: tuple[str, ...]
    loudness_target: float


def write_tracks(
    output: BatchOutput,
    specs: Sequence[SongSpec],
    paths: Sequence[Path],
    fmt: str,
    song_warnings: Sequence[tuple[str, ...]],
) -> list[Track]:
    """Encode each song of the batch to its file (cut to its own length) and describe it."""
    longest = max(spec.duration for spec in specs)
    tracks = []
    for index, (spec, path) in enumerate(zip(specs, paths, strict=True)):
        wave = output.waveforms[index].numpy()
        wave = anti_clip(cut_to_length(wave, spec.duration, output.sample_rate, longest))
        started = time.perf_counter()
        encoded = audio.encode(
            wave,
            path,
            sample_rate=output.sample_rate,
            title=spec.title,
            artist="AI Radio",
            target_lufs=output.loudness_target,
            fmt=fmt,
        )
        timings = {**output.stage_seconds, "encode": time.perf_counter() - started}
        tracks.append(
            Track(
                path=str(encoded.path),
                spec=spec,
                duration=encoded.duration,
                sample_rate=output.sample_rate,
                seed=spec.seed,
                timings=timings,
                peak_memory_mb=output.peak_memory_mb,
                settings=output.settings,
                warnings=song_warnings[index] + output.warnings,
            )
        )
    return tracks
