"""Benchmark: how many playing stations one bot process carries.

    .venv/bin/python -m bench.stations --servers 1000 --seconds 60

Runs `--servers` stations in this one process as the bot does: the real
`StationManager` and its cross-guild scheduler, real `Station`s on a real
SQLite store, and the real voice player (`bot.player.VoicePlayer`, Ogg Opus
passthrough, the next track opened ahead) driving discord.py's own
`AudioPlayer` thread per server, which pulls a 20 ms Opus frame every 20 ms
into a fake voice client. What cannot run here is replaced: the songwriter and
the engine by a backend that hands out ready-made Ogg Opus files (hard links,
after `--make-seconds`), Discord's voice servers by a client that counts the
frames instead of encrypting and sending them.

Once every station is playing it measures for `--seconds` and prints:

- event-loop lag: a task asks to wake every 5 ms; how late it woke (p50, p99,
  max): how long the loop was kept busy;
- CPU of the whole process (all threads) per 100 playing streams, in percent
  of one core, and its memory;
- frames: what the voice clients received against what real time asks for
  (100 % means every stream kept pace), and song changes in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
from discord.player import AudioPlayer

from bench.station import describe_lag, measure_lag
from bot.player import VoicePlayer
from bot.station import StationConfig
from bot.station.manager import StationManager
from bot.store import Store
from engine.spec import SongSpec, Track
from engine.worker.backend_base import JobHandle, SongBackendBase
from engine.worker.protocol import JobDone, SongJob
from tests.support.radio_helpers import tone

SPEC = SongSpec(
    title="Ready Made",
    caption="ambient, synth pad",
    lyrics="[instrumental]",
    bpm=90,
    key="A minor",
    duration=60,
    seed=1,
)


class ReadyMadeBackend(SongBackendBase):
    """A song backend whose songs are ready-made files: each job ends after `delay`
    seconds with a hard link of `source` (the rest is the real backends' own base)."""

    what = "the ready-made songs"

    def __init__(self, source: Path, tracks: Path, seconds: float, delay: float, slots: int):
        super().__init__(max_in_flight=1, max_attempts=1, on_event=None)
        self.max_in_flight = slots  # a whole cluster's slots, not one worker's
        self.source, self.tracks, self.seconds, self.delay = source, tracks, seconds, delay
        self._names = itertools.count()

    @property
    def free_slots(self) -> int:
        return self.max_in_flight - len(self._handles) if self._state == "ready" else 0

    def summary(self) -> str:
        return f"ready-made songs after {self.delay:g} s"

    async def start(self) -> None:
        self.tracks.mkdir(parents=True, exist_ok=True)
        self._state = "ready"

    async def _shut_down(self) -> None:
        return None

    def submit(self, job: SongJob, **callbacks: Callable[..., None] | None) -> JobHandle:
        handle = self._admit(job, tuple(callbacks.values()), full=self.free_slots <= 0)
        asyncio.get_running_loop().call_later(self.delay, self._done, handle)
        return handle

    def _done(self, handle: JobHandle) -> None:
        path = self.tracks / f"ready-{next(self._names)}.ogg"
        os.link(self.source, path)  # a file of its own, as a worker's would be
        track = Track(
            path=str(path),
            spec=SPEC,
            duration=self.seconds,
            sample_rate=48000,
            seed=1,
            timings={},
            peak_memory_mb=None,
            settings={},
        )
        self._finish(handle, JobDone(job_id=handle.job_id, track=track, write_seconds=0.0, sing_seconds=self.delay))


class _Speaker:
    async def speak(self, state: Any = None) -> None:
        return None


class CountingVoice:
    """What discord.py's AudioPlayer and the VoicePlayer use of a voice client; frames
    are counted instead of encrypted and sent to Discord."""

    timeout = 5.0
    frames = 0  # all voices together (one int add under the GIL per frame)
    lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.ws = _Speaker()
        self.client = SimpleNamespace(loop=loop)
        self.encoder = None
        self._player: AudioPlayer | None = None

    def is_connected(self) -> bool:
        return True

    def wait_until_connected(self, timeout: float | None = None) -> bool:
        return True

    def play(self, source: Any, *, after: Any = None, **options: Any) -> None:
        self._player = AudioPlayer(source, self, after=after)  # type: ignore[arg-type]
        self._player.start()

    def send_audio_packet(self, data: bytes, *, encode: bool = True) -> None:
        with CountingVoice.lock:
            CountingVoice.frames += 1

    def stop(self) -> None:
        if self._player is not None:
            self._player.stop()

    def pause(self) -> None:
        if self._player is not None:
            self._player.pause()

    def resume(self) -> None:
        if self._player is not None:
            self._player.resume()


class CountingClient:
    """The part of `discord.Client` the VoicePlayer reads: each guild's voice client."""

    def __init__(self) -> None:
        self.guilds: dict[int, SimpleNamespace] = {}

    def get_guild(self, guild_id: int) -> SimpleNamespace | None:
        return self.guilds.get(guild_id)


def make_song(path: Path, seconds: int) -> Path:
    return tone(path, seconds, "-ac", "2", "-ar", "48000", "-c:a", "libopus", "-b:a", "128k", frequency=220)


async def run(args: argparse.Namespace, root: Path) -> None:
    song = make_song(root / "song.ogg", args.song_seconds)
    backend = ReadyMadeBackend(song, root / "tracks", args.song_seconds, args.make_seconds, args.slots)
    config = StationConfig(buffer_size=2, default_duration=args.song_seconds, disk_budget_bytes=2**40)
    manager = StationManager(Store(root / "radio.sqlite3"), backend, config)
    await backend.start()
    await manager.start()
    loop = asyncio.get_running_loop()
    client = CountingClient()
    starts: list[int] = []  # the guild of every track started
    started = time.perf_counter()
    for guild_id in range(1, args.servers + 1):
        client.guilds[guild_id] = SimpleNamespace(voice_client=CountingVoice(loop))
        station = await manager.add_station(guild_id)
        player = VoicePlayer(client, guild_id, on_start=lambda _r, g=guild_id: starts.append(g))  # type: ignore[arg-type]
        await station.start(player)
    stations = manager.stations
    print(f"{args.servers} stations started in {time.perf_counter() - started:.1f} s", flush=True)
    while len(set(starts)) < args.servers:
        await asyncio.sleep(0.5)  # ramp-up: until every station has begun to play
    print(f"every station playing after {time.perf_counter() - started:.1f} s", flush=True)

    me = psutil.Process()
    lag: list[tuple[float, bool]] = []
    stop = asyncio.Event()
    lagger = loop.create_task(measure_lag(lag, stop))
    starts_before = len(starts)
    frames_before, cpu_before, wall_before = CountingVoice.frames, me.cpu_times(), time.monotonic()
    await asyncio.sleep(args.seconds)  # the measurement window
    frames, cpu, wall = CountingVoice.frames, me.cpu_times(), time.monotonic()
    stop.set()
    await lagger
    changes = len(starts) - starts_before
    playing = sum(1 for s in stations if s.now_playing is not None)
    threads, rss = threading.active_count(), me.memory_info().rss
    await manager.close()
    manager.store.close()

    seconds = wall - wall_before
    used = (cpu.user - cpu_before.user) + (cpu.system - cpu_before.system)
    per_100 = used / seconds / (playing / 100) * 100
    expected = args.servers * seconds / 0.02
    print(
        f"\nwindow: {seconds:.1f} s with {playing} of {args.servers} stations playing "
        f"({args.song_seconds} s songs, ready-made after {args.make_seconds:g} s)"
    )
    print(f"event-loop lag (5 ms timer), {describe_lag([v for v, _ in lag])}")
    print(
        f"CPU: {used / seconds:.0%} of one core in all, {per_100:.1f} % of one core per 100 "
        f"playing streams; memory {rss / 2**20:.0f} MB RSS, {threads} threads"
    )
    print(
        f"frames: {frames - frames_before} received of {expected:.0f} real time asks for "
        f"({(frames - frames_before) / expected:.1%}); songs started: {changes}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stations", description=__doc__)
    parser.add_argument("--servers", type=int, default=1000, help="stations, all playing")
    parser.add_argument("--seconds", type=float, default=60.0, help="the measurement window")
    parser.add_argument("--song-seconds", type=int, default=60, help="length of each song")
    parser.add_argument("--make-seconds", type=float, default=0.5, help="time to 'make' a song")
    parser.add_argument("--slots", type=int, default=64, help="songs made at once (the cluster)")
    args = parser.parse_args(argv)
    if args.servers < 1 or args.seconds <= 0 or not 10 <= args.song_seconds <= 600:
        parser.error("--servers >= 1, --seconds > 0, --song-seconds from 10 to 600")
    with tempfile.TemporaryDirectory(prefix="bench-stations-") as folder:
        asyncio.run(run(args, Path(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
