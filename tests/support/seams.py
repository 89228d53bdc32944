"""The silence between two songs as a listener hears it, measured frame by frame.

The radio plays short Ogg/Opus tracks (made as the worker makes them) through
the real bot, player and station into `tests.support.fake_voice`, whose player is
discord.py's own `AudioPlayer` reading the source every 20 ms, as on Discord.
A seam is the time from the last audio frame of one song to the first audio
frame of the next; inside a song two frames are 20 ms apart plus the thread's
lateness. Shared by tests/bot/test_bot_security.py and bench/seams.py.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from engine.spec import SongSpec, Track
from tests.support.bot_world import Server, World
from tests.support.fake_voice import PlayedSource
from tests.support.radio_helpers import tone

FRAME = 0.02  # seconds: discord.py's player sends one 20 ms frame per read


@dataclass(frozen=True)
class SeamFigures:
    seams_ms: list[float]  # last frame of a song -> first frame of the next
    inside_ms: list[float]  # between two frames inside the songs
    header_packets: int  # Ogg header packets sent as if they were audio

    def summary(self) -> str:
        def line(values: list[float]) -> str:
            return (
                f"min {min(values):.1f} / median {statistics.median(values):.1f} / "
                f"max {max(values):.1f} ms ({len(values)})"
            )

        return (
            f"between songs: {line(self.seams_ms)}; inside songs: {line(self.inside_ms)}; "
            f"header packets sent as audio: {self.header_packets}"
        )


def write_tracks(folder: Path, count: int, seconds: float) -> list[Path]:
    """Short Ogg/Opus tones, encoded as the worker encodes songs (engine.audio)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"seam-{index}.ogg"
        opus = ("-ac", "2", "-ar", "48000", "-c:a", "libopus", "-b:a", "128k", "-vbr", "on", "-f", "ogg")
        tone(path, seconds, *opus, frequency=220 * (index + 1))
        paths.append(path)
    return paths


def _track(path: Path, seconds: float, number: int) -> Track:
    spec = SongSpec(title=f"Seam {number}", caption="a tone", bpm=120, key="C major", duration=10)
    return Track(
        path=str(path),
        spec=spec,
        duration=seconds,
        sample_rate=48000,
        seed=number,
        timings={"test": 0.1},
        peak_memory_mb=None,
        settings={},
    )


def figures(plays: list[PlayedSource]) -> SeamFigures:
    seams = [
        (b.first_frame - a.last_frame) * 1000
        for a, b in pairwise(plays)
        if a.last_frame is not None and b.first_frame is not None
    ]
    inside = [
        (later - earlier) * 1000
        for play in plays
        for earlier, later in pairwise(play.frame_times[1:])  # discord.py waits 2 frames first
    ]
    return SeamFigures(seams, inside, sum(play.header_packets for play in plays))


async def measure_seams(
    world: World, server: Server, folder: Path, count: int = 4, seconds: float = 1.0
) -> SeamFigures:
    """Play `count` tracks of `seconds` back to back in `server` in real time and
    measure what went out. The server's station must not have played before."""
    voice_cls = world.bot.voice_cls
    before = voice_cls.frame_delay  # type: ignore[attr-defined]
    voice_cls.frame_delay = FRAME  # type: ignore[attr-defined]
    try:
        _, message = await world.run(server, server.dj, "radio_auto", mode="off")
        assert "Auto mode is off" in message.content, message.text
        station = world.bot.radio.known_station(server.id)
        assert station is not None
        paths = await asyncio.to_thread(write_tracks, folder, count, seconds)
        for number, path in enumerate(paths):
            await asyncio.to_thread(station.store.add_track, server.id, _track(path, seconds, number))
        await server.guild.set_voice(server.alice, server.lounge)
        await server.guild.set_voice(server.admin, server.lounge)
        _, message = await world.run(server, server.admin, "radio_join")
        assert "On air" in message.content, message.text
        plays = await world.fake.wait_for(
            lambda: (done := [p for p in world.voice.plays_in(server.id) if p.ended]) and len(done) >= count and done,
            timeout=60 + 4 * count * seconds,
        )
        return figures(plays[:count])
    finally:
        voice_cls.frame_delay = before  # type: ignore[attr-defined]
        await world.bot.radio.leave(server.id)
