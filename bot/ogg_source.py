"""OggOpusFile: an Ogg Opus track played as it is, without an ffmpeg process.

The worker writes Ogg Opus in 20 ms frames, exactly what Discord's voice
connection sends, so the packets can go out as they are in the file. discord.py's
`FFmpegOpusAudio(codec="copy")` does the same through one ffmpeg process per
stream (about 10 MB each); reading the pages here in the audio thread costs no
process at all, which is what lets one bot process play a thousand streams
(docs/scaling.md). The two header packets (OpusHead, OpusTags) are read and
checked, not sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import discord
from discord.oggparse import OggError, OggStream


class OggOpusFile(discord.AudioSource):
    """The Opus packets of an Ogg Opus file, one 20 ms frame per `read()`."""

    def __init__(self, path: Path):
        self._file: IO[bytes] = Path(path).open("rb")  # noqa: SIM115 (closed by cleanup)
        self._packets: Iterator[bytes] = OggStream(self._file).iter_packets()
        try:
            head = next(self._packets, b"")
            tags = next(self._packets, b"")
        except OggError as exc:
            self.cleanup()
            raise OSError(f"{path} is not an Ogg file: {exc}") from None
        if not head.startswith(b"OpusHead") or not tags.startswith(b"OpusTags"):
            self.cleanup()
            raise OSError(f"{path} is not Ogg Opus")

    def read(self) -> bytes:
        try:
            return next(self._packets, b"")
        except OggError:
            return b""  # a damaged page ends the track, as a truncated file would

    def is_opus(self) -> bool:
        return True

    def cleanup(self) -> None:
        self._file.close()
