"""Audio files from people: made sure to be only audio, then converted for playing.

A file's name says what it should be; its bytes may say otherwise. ffmpeg,
left to guess, reads whatever it recognises: an HLS playlist or an `ffconcat`
script named `song.mp3` makes it open other files of the machine, and a
container header may claim any length. So each file is checked in layers:

1. its first bytes must be those of the format its extension names (an
   `.mp3` starts with an ID3 tag or an MPEG frame, an `.ogg` with `OggS`, ...);
   text formats that point at other files (playlists, concat scripts, SDP,
   DASH manifests) are named as such and refused;
2. ffprobe and ffmpeg read it with that demuxer forced (`-f`), never a guess,
   and only through the `file` protocol (`-protocol_whitelist file`); the
   MP4 demuxer's external references stay off (`-enable_drefs 0`);
3. it must hold an audio stream and no video (a cover picture is fine); a
   header that claims a length outside the allowed range is refused at once;
4. the conversion (to Ogg/Opus for playing, or to FLAC for a training
   dataset, which should lose nothing) stops at the longest allowed length
   plus a second (`-t`) and within `CONVERT_TIMEOUT`;
5. the converted file is decoded to the end and its real length checked:
   a header that lied (a "30 s" WebM that holds 10 minutes) is caught here.

Every refusal is an `ImportRefused` whose message says what is wrong and
what is allowed, never a path of this machine; ffmpeg's own words go to the
log. Whatever goes wrong, no partial file is left behind. These functions
block (ffmpeg): call them in a thread. No discord import.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ImportRefused

log = logging.getLogger("engine.audio_import")

SAMPLE_RATE = 48_000
CONVERT_TIMEOUT = 120.0  # seconds ffmpeg may take to convert one file
PROBE_TIMEOUT = 30.0
#: Sample rate of the length check's decode (mono 16-bit): cheap, exact to 1/8000 s.
CHECK_RATE = 8000
#: How much shorter or longer than allowed a decoded file may be (frame rounding).
LENGTH_SLACK = 0.5


@dataclass(frozen=True)
class AudioFormat:
    label: str  # as people call it
    demuxer: str  # ffmpeg's -f
    magic: tuple[tuple[int, bytes], ...]  # (offset, bytes): any one must match


def _mpeg_frame(head: bytes, mask: int) -> bool:
    return len(head) > 1 and head[0] == 0xFF and head[1] & mask == mask


FORMATS: dict[str, AudioFormat] = {
    ".mp3": AudioFormat("MP3", "mp3", ((0, b"ID3"),)),
    ".ogg": AudioFormat("Ogg", "ogg", ((0, b"OggS"),)),
    ".opus": AudioFormat("Opus", "ogg", ((0, b"OggS"),)),
    ".wav": AudioFormat("WAV", "wav", ((0, b"RIFF"), (0, b"RF64"))),
    ".flac": AudioFormat("FLAC", "flac", ((0, b"fLaC"), (0, b"ID3"))),
    ".m4a": AudioFormat("M4A", "mp4", ((4, b"ftyp"),)),
    ".aac": AudioFormat("AAC", "aac", ((0, b"ID3"), (0, b"ADIF"))),
    ".webm": AudioFormat("WebM", "webm", ((0, b"\x1a\x45\xdf\xa3"),)),
}
#: What a file is converted to: suffix -> (ffmpeg codec options, demuxer to read it back).
OUTPUTS: dict[str, tuple[tuple[str, ...], str]] = {
    ".ogg": (("-c:a", "libopus", "-b:a", "128k"), "ogg"),
    ".flac": (("-c:a", "flac"), "flac"),
}
#: Text formats that make ffmpeg open other files or URLs.
INDIRECT = (
    (b"#EXTM3U", "a playlist (HLS/M3U)"),
    (b"#EXT", "a playlist (M3U)"),
    (b"ffconcat", "an ffmpeg concat script"),
    (b"[playlist]", "a playlist (PLS)"),
    (b"<?xml", "an XML file (a DASH manifest or playlist)"),
    (b"v=0", "a stream description (SDP)"),
    (b"<", "a markup file (a playlist or a web page)"),
    (b"file ", "an ffmpeg concat script"),
)


@dataclass(frozen=True)
class ImportedAudio:
    path: Path  # the converted file (Ogg/Opus or FLAC), 48 kHz stereo
    duration: float  # decoded, not read from a header


def sniff(head: bytes, suffix: str) -> None:
    """Refuse `head` (the file's first bytes) unless it starts as `suffix` says."""
    fmt = FORMATS.get(suffix)
    if fmt is None:
        raise ImportRefused(f"'{suffix}' files are not taken: allowed are {', '.join(FORMATS)}")
    if not head:
        raise ImportRefused("the file is empty")
    if any(head[offset : offset + len(magic)] == magic for offset, magic in fmt.magic):
        return
    if (suffix == ".mp3" and _mpeg_frame(head, 0xE0)) or (suffix == ".aac" and _mpeg_frame(head, 0xF0)):
        return
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for marker, what in INDIRECT:
        if start.startswith(marker.lower()):
            raise ImportRefused(f"the file is {what}, not audio: upload the audio file itself")
    raise ImportRefused(
        f"the file is not {fmt.label} audio, as its name says: its contents are something "
        f"else; upload a real {suffix} file or name it for what it is"
    )


def _input(fmt: AudioFormat, path: Path) -> list[str]:
    """ffmpeg/ffprobe input options: the demuxer forced, only local files."""
    options = ["-protocol_whitelist", "file", "-f", fmt.demuxer]
    if fmt.demuxer == "mp4":
        options += ["-enable_drefs", "0"]
    return options + ["-i", f"file:{path}"]


def _run(command: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ImportRefused(f"{what} took longer than {timeout:g} s: try a smaller file") from None
    if result.returncode != 0:
        log.debug(
            "%s failed (%d): %s",
            what,
            result.returncode,
            result.stderr.decode(errors="replace")[-500:],
        )
    return result


def probe_streams(path: Path, suffix: str, max_seconds: float) -> None:
    """Refuse a file that holds no audio, holds video, or claims a length outside
    `max_seconds` (read with the demuxer the extension names)."""
    fmt = FORMATS[suffix]
    result = _run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", *_input(fmt, path)],
        PROBE_TIMEOUT,
        "reading the file",
    )
    try:
        data = json.loads(result.stdout) if result.returncode == 0 else {}
    except ValueError:
        data = {}
    streams = data.get("streams") or []
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not audio:
        raise ImportRefused(f"the file holds no {fmt.label} audio the radio can read")
    video = [
        s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if video:
        raise ImportRefused("the file holds video: upload an audio file (a cover picture is fine)")
    claimed = _number(audio[0].get("duration")) or _number((data.get("format") or {}).get("duration"))
    if claimed is not None and claimed > max_seconds + LENGTH_SLACK:
        raise ImportRefused(f"the file says it is {claimed:.0f} s long: allowed is at most {max_seconds:g} s")


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number == number and number >= 0 else None


def decoded_seconds(path: Path) -> float:
    """The real length of a converted file: decoded to the end, samples counted."""
    demuxer = OUTPUTS[path.suffix][1]
    result = _run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            *_input(AudioFormat("", demuxer, ()), path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(CHECK_RATE),
            "-f",
            "s16le",
            "-",
        ],
        CONVERT_TIMEOUT,
        "checking the converted file",
    )
    if result.returncode != 0:
        raise ImportRefused("the converted file could not be read back: the upload is damaged")
    return len(result.stdout) / 2 / CHECK_RATE


def import_audio(
    data: bytes,
    suffix: str,
    folder: Path,
    stem: str,
    *,
    min_seconds: float,
    max_seconds: float,
    output: str = ".ogg",
) -> ImportedAudio:
    """Check `data` (a file named `*.suffix`) and convert it to `folder/stem.ogg`
    (or `.flac` with `output=".flac"`).

    Raises `ImportRefused`; nothing is left in `folder` then."""
    suffix = suffix.lower()
    sniff(data[:64], suffix)
    codec, demuxer = OUTPUTS[output]
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{stem}{output}"
    fd, raw_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{suffix}", dir=folder)
    raw = Path(raw_name)
    fd_out, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{output}", dir=folder)
    os.close(fd_out)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        probe_streams(raw, suffix, max_seconds)
        result = _run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                *_input(FORMATS[suffix], raw),
                "-map",
                "0:a:0",
                "-vn",
                "-sn",
                "-dn",
                "-map_metadata",
                "-1",
                "-t",
                f"{max_seconds + 1:g}",
                *codec,
                "-ar",
                str(SAMPLE_RATE),
                "-ac",
                "2",
                "-f",
                demuxer,
                f"file:{tmp}",
            ],
            CONVERT_TIMEOUT,
            "converting the file",
        )
        if result.returncode != 0:
            raise ImportRefused("the file could not be converted for playing: it is damaged")
        seconds = decoded_seconds(tmp)
        if seconds > max_seconds + LENGTH_SLACK:
            raise ImportRefused(
                f"the song is longer than {max_seconds:g} s (whatever its header says): "
                f"allowed is {min_seconds:g} to {max_seconds:g} s"
            )
        if seconds < min_seconds - LENGTH_SLACK:
            raise ImportRefused(f"the song is {seconds:.1f} s long: allowed is {min_seconds:g} to {max_seconds:g} s")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        raise
    finally:
        raw.unlink(missing_ok=True)
    return ImportedAudio(out, seconds)
