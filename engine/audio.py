"""Audio out: loudness normalisation and encoding through ffmpeg.

Ogg/Opus is what the voice player streams (Discord speaks Opus, so the file
can be passed through without re-encoding); FLAC, MP3 and WAV are for files
people keep. Loudness is measured with ffmpeg's EBU R128 meter and corrected
with one linear gain, capped so the sample peak stays below -1 dBFS: the
song's dynamics are kept, only its level changes.

These functions block (they run ffmpeg as a subprocess). They belong in the
worker process or a thread, never on an event loop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import AudioError

SAMPLE_RATE = 48_000
PEAK_CEILING_DB = -1.0
#: Never amplify by more than this: silence or near-silence would become noise.
MAX_GAIN_DB = 24.0
SILENCE_LUFS = -70.0

#: format -> ffmpeg output arguments
CODECS: dict[str, list[str]] = {
    "ogg": ["-c:a", "libopus", "-b:a", "128k", "-vbr", "on", "-f", "ogg"],
    "flac": ["-c:a", "flac", "-f", "flac"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"],
    "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
}
SUFFIXES = {".ogg": "ogg", ".opus": "ogg", ".flac": "flac", ".mp3": "mp3", ".wav": "wav"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class EncodedAudio:
    path: Path
    format: str
    duration: float
    sample_rate: int
    measured_lufs: float
    gain_db: float


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe reads back from a file."""

    duration: float
    sample_rate: int
    channels: int
    codec: str
    tags: dict[str, str]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudioError(
            f"{name} is not installed or not on PATH: install ffmpeg (sudo apt-get install ffmpeg, or ./setup.sh)"
        )
    return path


def _as_pcm(audio: np.ndarray) -> np.ndarray:
    """[channels, samples] float -> interleaved float32 [samples, channels]."""
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2 or audio.shape[0] > 8:
        raise AudioError(f"audio must be shaped [channels, samples]; got {tuple(audio.shape)}")
    if not np.all(np.isfinite(audio)):
        raise AudioError("audio contains NaN or infinite samples")
    return np.ascontiguousarray(audio.T, dtype=np.float32)


def _pcm_input(channels: int, sample_rate: int) -> list[str]:
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]


def measure_loudness(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Integrated loudness in LUFS (EBU R128). Silence reads as -70."""
    pcm = _as_pcm(audio)
    result = subprocess.run(
        [_tool("ffmpeg"), "-hide_banner", "-nostats", *_pcm_input(pcm.shape[1], sample_rate)]
        + ["-af", "ebur128", "-f", "null", "-"],
        input=pcm.tobytes(),
        capture_output=True,
    )
    if result.returncode != 0:
        raise AudioError(f"ffmpeg could not measure loudness: {result.stderr.decode()[-300:]}")
    found = re.findall(r"I:\s+(-?[\d.]+|-inf)\s+LUFS", result.stderr.decode())
    if not found or found[-1] == "-inf":
        return SILENCE_LUFS
    return max(float(found[-1]), SILENCE_LUFS)


def loudness_gain_db(measured_lufs: float, peak: float, target_lufs: float) -> float:
    """The gain that brings `measured_lufs` to `target_lufs`, capped so the peak stays
    at or below -1 dBFS and the gain at or below `MAX_GAIN_DB`."""
    if measured_lufs <= SILENCE_LUFS or peak <= 0:
        return 0.0
    gain = target_lufs - measured_lufs
    peak_room = PEAK_CEILING_DB - 20 * np.log10(peak)
    return float(min(gain, peak_room, MAX_GAIN_DB))


def clean_tag(value: str, limit: int = 200) -> str:
    """A metadata value on one line, without control characters."""
    return _CONTROL.sub(" ", value).strip()[:limit]


def encode(
    audio: np.ndarray,
    path: Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    title: str = "",
    artist: str = "",
    target_lufs: float | None = -14.0,
    fmt: str | None = None,
) -> EncodedAudio:
    """Normalise (unless `target_lufs` is None) and write `audio` ([channels, samples],
    floats in -1..1) to `path`. The format comes from `fmt` or the suffix. The file
    appears atomically: a half-written file is never visible under `path`."""
    path = Path(path)
    fmt = fmt or SUFFIXES.get(path.suffix.lower())
    if fmt not in CODECS:
        raise AudioError(f"unknown audio format for '{path.name}': allowed are {', '.join(sorted(SUFFIXES))}")
    pcm = _as_pcm(audio)
    measured, gain = SILENCE_LUFS, 0.0
    if target_lufs is not None:
        measured = measure_loudness(audio, sample_rate)
        gain = loudness_gain_db(measured, float(np.abs(pcm).max(initial=0.0)), target_lufs)
        pcm = pcm * np.float32(10 ** (gain / 20))
    pcm = np.clip(pcm, -1.0, 1.0)

    path.parent.mkdir(parents=True, exist_ok=True)
    tags: list[str] = []
    for key, value in (("title", title), ("artist", artist)):
        if value:
            tags += ["-metadata", f"{key}={clean_tag(value)}"]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y"]
            + _pcm_input(pcm.shape[1], sample_rate)
            + tags
            + CODECS[fmt]
            + [tmp_name],
            input=pcm.tobytes(),
            capture_output=True,
        )
        if result.returncode != 0:
            raise AudioError(f"ffmpeg could not write {path.name}: {result.stderr.decode()[-300:]}")
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return EncodedAudio(path, fmt, pcm.shape[0] / sample_rate, sample_rate, measured, gain)


def probe(path: Path) -> AudioInfo:
    """Read duration, sample rate, channels, codec and tags of an audio file."""
    result = subprocess.run(
        [_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format"]
        + ["-show_streams", "-select_streams", "a:0", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise AudioError(f"cannot read '{path}' as audio: {result.stderr.strip()[-300:]}")
    data = json.loads(result.stdout)
    if not data.get("streams"):
        raise AudioError(f"'{path}' has no audio stream")
    stream, container = data["streams"][0], data.get("format", {})
    tags = {k.lower(): v for k, v in container.get("tags", {}).items()}
    tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    duration = float(stream.get("duration") or container.get("duration") or 0.0)
    return AudioInfo(
        duration=duration,
        sample_rate=int(stream["sample_rate"]),
        channels=int(stream["channels"]),
        codec=stream["codec_name"],
        tags=tags,
    )
