"""`/radio_upload`: a listener's own audio file, checked and made ready to play.

Checks before anything is downloaded: the file name's extension (a format the
radio takes) and the size Discord reports (`UPLOAD_MAX_MB`). Then the bytes
are fetched and handed to `engine.audio_import`, which makes sure they are
only audio of the format the name claims (never a playlist or a script that
points at other files), converts them to Ogg/Opus like every generated track
(so the player streams all of them the same way) and checks the real length
by decoding it: `MIN_DURATION` seconds up to the station's longest song.
Refusals never show a path of the host; nothing is left behind. The file work
runs in a thread.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bot.replies import RadioError
from engine.audio_import import FORMATS, ImportRefused, import_audio
from engine.spec import MAX_TITLE, MIN_DURATION, SongSpec, Track
from engine.text_safety import sanitize_text

UPLOAD_SUFFIXES = tuple(FORMATS)
SAMPLE_RATE = 48_000


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
        raise UploadError(
            f"'{sanitize_text(filename, 80)}' is not an audio file the radio "
            f"plays: allowed are {', '.join(UPLOAD_SUFFIXES)}."
        )
    if size > max_bytes:
        raise UploadError(
            f"the file is {size / 2**20:.1f} MB: allowed is at most {max_bytes / 2**20:.0f} MB (UPLOAD_MAX_MB)."
        )
    if size <= 0:
        raise UploadError("the file is empty.")


def prepare_upload(data: bytes, filename: str, tracks_dir: Path, max_bytes: int, max_seconds: int) -> Upload:
    """Check the downloaded bytes and convert them to Ogg/Opus in `tracks_dir`.

    Blocking (file I/O, ffprobe, ffmpeg): call it in a thread.
    """
    started = time.monotonic()
    check_attachment(filename, len(data), max_bytes)
    stem = f"upload-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    try:
        audio = import_audio(
            data,
            Path(filename).suffix,
            tracks_dir,
            stem,
            min_seconds=MIN_DURATION,
            max_seconds=max_seconds,
        )
    except ImportRefused as exc:
        raise UploadError(f"{exc}.") from None
    return Upload(audio.path, audio.duration, max(time.monotonic() - started, 1e-3))


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
