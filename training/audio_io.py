"""Read any audio file as 48 kHz stereo float32, through ffmpeg.

ffmpeg (which the engine already needs) decodes every format users bring
(wav, flac, mp3, ogg/opus, m4a), resamples and up/down-mixes in one pass, and
stops reading at `max_seconds`, so a long file costs no more than what is kept.
A file ffmpeg cannot read raises `AudioReadError` saying why; preprocessing
reports it with the file's name and goes on with the others. `check_audio`
asks ffprobe first, so a run whose only changed files are broken does not
load the model at all.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
#: Shorter than this is not worth a training sample (one latent frame is 40 ms).
MIN_SECONDS = 0.5


class AudioReadError(RuntimeError):
    """An audio file could not be read; the message says why."""


def check_audio(path: Path) -> None:
    """Raise `AudioReadError` unless ffprobe finds an audio stream of some length."""
    from engine.audio import AudioError, probe

    try:
        info = probe(path)
    except AudioError as exc:
        raise AudioReadError(f"cannot be read as audio ({str(exc).split(': ')[-1]})") from None
    if info.duration and info.duration < MIN_SECONDS:
        raise AudioReadError(f"is {info.duration:.2f} s long; at least {MIN_SECONDS} s is needed")


def read_audio(
    path: Path, *, sample_rate: int = 48_000, channels: int = 2, max_seconds: float | None = None
) -> np.ndarray:
    """`[channels, samples]` float32 in [-1, 1]."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioReadError("ffmpeg is not installed: install it (setup.sh does) and retry")
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path)]
    if max_seconds is not None:
        command += ["-t", f"{max_seconds:.3f}"]
    command += ["-vn", "-f", "f32le", "-ac", str(channels), "-ar", str(sample_rate), "-"]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        reason = (lines[-1] if lines else "ffmpeg failed").removeprefix(f"{path}: ")
        raise AudioReadError(f"cannot be decoded as audio ({reason})")
    samples = np.frombuffer(result.stdout, dtype=np.float32)
    if samples.size < MIN_SECONDS * sample_rate * channels:
        raise AudioReadError(
            f"holds {samples.size / channels / sample_rate:.2f} s of audio; at least {MIN_SECONDS} s is needed"
        )
    if not np.isfinite(samples).all():
        raise AudioReadError("decodes to NaN or infinite samples")
    usable = samples.size - samples.size % channels
    return np.clip(samples[:usable].reshape(-1, channels).T, -1.0, 1.0).copy()
