"""`/radio_upload`: a listener's own audio file, checked and made ready to play.

Checks before anything is downloaded: the file name's extension (a format
ffmpeg reads) and the size Discord reports (`UPLOAD_MAX_MB`). Then the bytes
are fetched, written to the tracks folder, probed with ffprobe (it must hold
audio, of `MIN_DURATION` seconds up to the station's longest song) and
converted to Ogg/Opus like every generated track, so the player streams all
of them the same way. The file work runs in a thread.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bot.replies import RadioError
from engine.audio import AudioError, probe
from engine.spec import MAX_TITLE, MIN_DURATION, SongSpec, Track
from engine.text_safety import sanitize_text

UPLOAD_SUFFIXES = (".mp3", ".ogg", ".opus", ".wav", ".flac", ".m4a", ".aac", ".webm")
SAMPLE_RATE = 48_000
CONVERT_TIMEOUT = 120  # seconds ffmpeg may take to convert one upload


class UploadError(RadioError):
    """The upload was refused; the message says why and what is allowed."""


@dataclass(frozen=True)
class Upload:
    path: Path
    duration: float
    seconds: float  # how long checking and converting took


def check_attachment(filename: str, size: int, max_bytes: int) -> None:
    """Refuse a file by its name and reported size, before downloading it."""
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadError(f"'{sanitize_text(filename, 80)}' is not an audio file the radio "
                          f"plays: allowed are {', '.join(UPLOAD_SUFFIXES)}.")  # fmt: skip
    if size > max_bytes:
        raise UploadError(f"the file is {size / 2**20:.1f} MB: allowed is at most "
                          f"{max_bytes / 2**20:.0f} MB (UPLOAD_MAX_MB).")  # fmt: skip
    if size <= 0:
        raise UploadError("the file is empty.")


def prepare_upload(
    data: bytes, filename: str, tracks_dir: Path, max_bytes: int, max_seconds: int
) -> Upload:
    """Check the downloaded bytes and convert them to Ogg/Opus in `tracks_dir`.

    Blocking (file I/O, ffprobe, ffmpeg): call it in a thread.
    """
    started = time.monotonic()
    check_attachment(filename, len(data), max_bytes)
    tracks_dir.mkdir(parents=True, exist_ok=True)
    stem = f"upload-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    raw = tracks_dir / f"{stem}.part{Path(filename).suffix.lower()}"
    out = tracks_dir / f"{stem}.ogg"
    raw.write_bytes(data)
    try:
        try:
            info = probe(raw)
        except AudioError as exc:
            raise UploadError("the file holds no audio the radio can read.") from exc
        if not MIN_DURATION <= info.duration <= max_seconds:
            raise UploadError(f"the song is {info.duration:.1f} s long: allowed is "
                              f"{MIN_DURATION} to {max_seconds} s on this station.")  # fmt: skip
        result = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(raw), "-vn",
             "-map_metadata", "-1", "-c:a", "libopus", "-b:a", "128k",
             "-ar", str(SAMPLE_RATE), "-ac", "2", str(out)],
            capture_output=True, text=True, timeout=CONVERT_TIMEOUT,
        )  # fmt: skip
        if result.returncode != 0:
            out.unlink(missing_ok=True)
            raise UploadError("the file could not be converted for playing: "
                              f"{sanitize_text(result.stderr, 200)}")  # fmt: skip
        duration = probe(out).duration
    finally:
        raw.unlink(missing_ok=True)
    return Upload(out, duration, max(time.monotonic() - started, 1e-3))


def upload_track(upload: Upload, title: str, uploader: str, language: str) -> Track:
    """The `Track` of an upload. Nobody wrote a spec for it, so the spec only carries
    what the radio shows (title, who uploaded it, its length); the musical fields
    are neutral placeholders."""
    clean = sanitize_text(re.sub(r"[_]+", " ", title), MAX_TITLE) or "Untitled upload"
    spec = SongSpec(
        title=clean,
        caption=f"uploaded by {sanitize_text(uploader, 100) or 'a listener'}",
        bpm=120,
        key="C major",
        duration=max(MIN_DURATION, round(upload.duration)),
        language=language,
    )
    return Track(
        path=str(upload.path),
        spec=spec,
        duration=upload.duration,
        sample_rate=SAMPLE_RATE,
        seed=0,
        timings={"upload": upload.seconds},
        peak_memory_mb=None,
        settings={"source": "upload"},
    )
