"""The stages of making songs: the plan, fixed before anything runs on the GPU, and
what the later stages hand on.

`MusicEngine` first checks the request (stage 1), then turns it into a frozen
`SongPlan`: every song's spec with its clamped length and its seed, the file it
goes to, the sampling settings, and how many songs each pipeline call may make
(the tier's batch limit, lowered by the VRAM guard). Stages 3 to 5 (denoise,
decode, encode) then only carry the plan out, call after call, handing on
`Denoised` latents and `Decoded` waveforms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from engine import audio
from engine.errors import GenerationError
from engine.spec import SongSpec
from engine.vae_decode import DecodeReport

MAX_STEPS = 200


@dataclass(frozen=True)
class Sampling:
    """Denoising settings: steps, classifier-free guidance scale and timestep shift."""

    steps: int
    guidance: float
    shift: float


TURBO_SAMPLING = Sampling(steps=8, guidance=1.0, shift=3.0)
BASE_SAMPLING = Sampling(steps=32, guidance=7.0, shift=3.0)


def check_inputs(fmt: str, steps: int | None) -> None:
    """Stage 1: refuse what no plan could carry out, naming what is allowed."""
    if fmt not in audio.CODECS:
        raise GenerationError(f"unknown output format '{fmt}': allowed are {', '.join(audio.CODECS)}")
    if steps is not None and not 1 <= steps <= MAX_STEPS:
        raise GenerationError(f"steps={steps} is not allowed: use 1 to {MAX_STEPS}")


def choose_sampling(defaults: Sampling, steps: int | None, guidance: float | None, shift: float | None) -> Sampling:
    """What the caller asked for, the model's defaults for the rest."""
    return Sampling(
        steps=steps or defaults.steps,
        guidance=guidance if guidance is not None else defaults.guidance,
        shift=shift or defaults.shift,
    )


@dataclass(frozen=True)
class PipelineCall:
    """The songs of one pipeline call, their files and their own warnings."""

    specs: tuple[SongSpec, ...]
    paths: tuple[Path, ...]
    song_warnings: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class SongPlan:
    """Everything stages 3 to 5 need, decided up front (see the module docstring)."""

    specs: tuple[SongSpec, ...]  # clamped lengths, seeds fixed
    paths: tuple[Path, ...]
    fmt: str
    sampling: Sampling
    cfg: bool  # classifier-free guidance runs (a base model with guidance above 1)
    songs_per_call: int
    song_warnings: tuple[tuple[str, ...], ...]
    shared_warnings: tuple[str, ...]

    def calls(self) -> Iterator[PipelineCall]:
        """The pipeline calls that make every song, `songs_per_call` at a time."""
        size = self.songs_per_call
        for start in range(0, len(self.specs), size):
            part = slice(start, start + size)
            yield PipelineCall(self.specs[part], self.paths[part], self.song_warnings[part])


@dataclass(frozen=True)
class Denoised:
    """Stage 3's result for one pipeline call."""

    latents: torch.Tensor
    text_seconds: float
    dit_seconds: float
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Decoded:
    """Stage 4's result for one pipeline call."""

    waveforms: torch.Tensor
    report: DecodeReport
    seconds: float
    peak_memory_mb: float | None


def check_finite(latents: torch.Tensor, dtype: str) -> None:
    """NaN or infinite latents would decode to noise or silence; stop the song and say
    why instead. float16 overflowing is the usual cause (GPUs before Ampere)."""
    if torch.isfinite(latents).all():
        return
    hint = (
        "float16 overflows on some songs: set PRECISION=fp32 in .env (more memory)"
        if dtype == "float16"
        else "the checkpoint or the active adapter may be damaged"
    )
    raise GenerationError(f"the DiT produced NaN or infinite values in {dtype}; {hint}")
