"""`python -m bot.local`: one station on this machine, no Discord needed.

The local listener runs the whole radio (store, GPU worker, station, play
loop) and "plays" each track by the clock: for its duration (divided by
`--speed`), while its file is copied into the output folder under its play
number (`0001-rainy-night.ogg`, ...), with a line added to `playlist.m3u` and to
`plays.jsonl` (number, title, fresh or replay, requester, start time, gap
since the previous track). Listen along by opening the files in order, or
play `playlist.m3u` in any player.

Try it with the tiny model (noise, not music, but every part runs):

    python -m engine tiny-checkpoint /tmp/tiny
    CHECKPOINT_DIR=/tmp/tiny DEFAULT_DURATION=10 python -m bot.local --songs 5 --speed 5

Type commands while it runs: `request THEME`, `skip`, `pause`, `resume`,
`status`, `auto on|off`, `preset NAME`, `busy REASON` (pretend the GPU is
taken, e.g. by training), `free`, `stats`, `quit`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from bot.presets import PRESETS
from bot.settings import BotSettings, load_bot_settings
from bot.station import Station
from bot.station.manager import StationManager, manager_from_settings
from bot.store import StoreError, TrackRecord
from engine.logs import setup_logging
from engine.settings import SettingsError, drop_secrets_from_environment
from engine.text_safety import slug
from engine.worker.client import WorkerError
from engine.worker.process import WorkerConfig

log = logging.getLogger("bot.local")

__all__ = ["LocalPlayer", "PlayedTrack", "main", "manager_from_settings"]

#: The local station's guild id (Discord ids are far larger, so it never collides).
LOCAL_GUILD_ID = 1
LOCAL_USER_ID = 1


@dataclass(frozen=True)
class PlayedTrack:
    """One line of `plays.jsonl`."""

    number: int
    track_id: int
    title: str
    file: str
    source: str
    requester: str | None
    duration: float
    started_at: str
    gap_ms: float | None


class LocalPlayer:
    """Plays tracks by the clock and writes them, numbered, into `out_dir`.

    `speed` > 1 plays faster than real time (for trials and tests). `gaps`
    holds, per track after the first, the seconds between the end of the
    previous track and the start of this one: the silence a listener hears.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        speed: float = 1.0,
        on_play: Callable[[PlayedTrack], None] | None = None,
        on_end: Callable[[PlayedTrack, bool], None] | None = None,
    ):
        if not 0.01 <= speed <= 10_000:
            raise ValueError(f"speed={speed}: allowed is 0.01 to 10000 (1 = real time)")
        self.out_dir = Path(out_dir)
        self.speed = speed
        self.on_play = on_play
        self.on_end = on_end
        self.gaps: list[float] = []
        self.played: list[PlayedTrack] = []
        self._number = _last_number(self.out_dir)
        self._last_end: float | None = None
        self._cut = False
        self._paused = False
        self._changed = asyncio.Event()

    async def play(self, record: TrackRecord) -> bool:
        loop = asyncio.get_running_loop()
        start = loop.time()
        gap = None if self._last_end is None else start - self._last_end
        self._cut = False
        self._number += 1
        # The clock runs from `start`: copying the file is part of the track's time.
        line = await asyncio.to_thread(self._write, self._number, record, gap)
        if gap is not None:
            self.gaps.append(gap)
        self.played.append(line)
        if self.on_play is not None:
            self.on_play(line)
        complete = await self._clock(record.duration / self.speed - (loop.time() - start))
        self._last_end = loop.time()
        if self.on_end is not None:
            self.on_end(line, complete)
        return complete

    async def _clock(self, seconds: float) -> bool:
        """Let `seconds` of playing time pass (not counting pauses); False when cut."""
        loop = asyncio.get_running_loop()
        remaining = seconds
        while remaining > 0 and not self._cut:
            changed = self._changed
            if self._paused:
                await changed.wait()
                continue
            began = loop.time()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
            remaining -= loop.time() - began
        return not self._cut

    def stop(self) -> None:
        self._cut = True
        self._notify()

    def pause(self) -> None:
        self._paused = True
        self._notify()

    def resume(self) -> None:
        self._paused = False
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _write(self, number: int, record: TrackRecord, gap: float | None) -> PlayedTrack:
        """In a thread: copy the file and add it to the playlist and the log."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        name = f"{number:04d}-{slug(record.title)}{record.path.suffix}"
        shutil.copyfile(record.path, self.out_dir / name)  # OSError when the file vanished
        line = PlayedTrack(
            number=number,
            track_id=record.id,
            title=record.title,
            file=name,
            source="replay" if record.status == "played" else "fresh",
            requester=record.requester_name,
            duration=record.duration,
            started_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            gap_ms=None if gap is None else round(gap * 1000, 3),
        )
        playlist = self.out_dir / "playlist.m3u"
        with playlist.open("a", encoding="utf-8") as handle:
            if handle.tell() == 0:
                handle.write("#EXTM3U\n")
            handle.write(f"#EXTINF:{round(record.duration)},{record.title}\n{name}\n")
        with (self.out_dir / "plays.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(line), ensure_ascii=False) + "\n")
        return line


def _last_number(out_dir: Path) -> int:
    """Numbering goes on where an earlier run stopped."""
    numbers = [int(p.name[:4]) for p in out_dir.glob("[0-9][0-9][0-9][0-9]-*")]
    return max(numbers, default=0)


def _print_play(line: PlayedTrack) -> None:
    who = f", requested by {line.requester}" if line.requester else ""
    print(f"> {line.number:04d} {line.title} ({line.duration:.0f} s, {line.source}{who})", flush=True)


async def _show_status(station: Station) -> None:
    status = await station.status()
    print(f"status: {status.message}")
    for note in status.notes:
        print(f"  note: {note}")
    print(f"  buffered: {', '.join(t.title for t in status.buffered) or 'nothing'}")
    for job in status.queue:
        doing = status.making.get(job.id, job.status)
        who = job.requester_name or "auto"
        print(f"  job {job.id} ({who}): {job.theme or 'station theme'} - {doing}")


async def _command(text: str, station: Station, manager: StationManager) -> bool:
    """Run one typed command; False to quit."""
    word, _, rest = text.strip().partition(" ")
    word, rest = word.lower(), rest.strip()
    try:
        if word in ("quit", "exit"):
            return False
        if word == "request":
            receipt = await station.request(LOCAL_USER_ID, "you", rest)
            print(f"queued as job {receipt.job.id}, place {receipt.position} in the queue")
        elif word == "skip":
            station.skip()
        elif word == "pause":
            station.pause()
        elif word == "resume":
            station.resume()
        elif word == "auto":
            await station.set_auto_mode(rest.lower() == "on")
        elif word == "preset":
            await station.apply_preset(rest)
        elif word == "busy":
            print("pausing generation (the jobs in flight finish first)...")
            await manager.pause_generation(rest or "busy")
        elif word == "free":
            await manager.resume_generation()
        elif word == "stats":
            print(await station.stats())
        elif word == "status" or not word:
            await _show_status(station)
        else:
            print(
                f"unknown command {word!r}: request, skip, pause, resume, status, "
                "auto on|off, preset NAME, busy REASON, free, stats, quit"
            )
    except (StoreError, WorkerError, ValueError) as exc:
        print(f"error: {exc}")
    return True


async def _read_commands(station: Station, manager: StationManager, done: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        return  # no stdin
    if not (os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return  # a plain file or /dev/null: the event loop cannot watch it; no commands
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not done.is_set():
        line = await reader.readline()
        if not line:
            return
        if not await _command(line.decode(errors="replace"), station, manager):
            done.set()


async def run(args: argparse.Namespace, settings: BotSettings) -> int:
    worker = WorkerConfig.from_settings(
        settings, songwriter=args.songwriter, steps=args.steps, checkpoint=args.checkpoint
    )
    manager = manager_from_settings(settings, worker)
    done = asyncio.Event()
    ended = 0

    def on_end(_line: PlayedTrack, _complete: bool) -> None:
        nonlocal ended
        ended += 1
        if args.songs and ended >= args.songs:
            done.set()

    player = LocalPlayer(args.out or settings.local_output_dir, speed=args.speed, on_play=_print_play, on_end=on_end)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        print("starting the music worker (loading the models)...", flush=True)
        await manager.client.start()
        await manager.start()
        station = await manager.add_station(LOCAL_GUILD_ID)
        style = {k: v for k, v in (("genre", args.genre), ("theme", args.theme), ("mood", args.mood)) if v is not None}
        if args.preset:
            await station.apply_preset(args.preset)
        if style:
            await station.set_style(**style)
        for theme in args.request:
            await station.request(LOCAL_USER_ID, "you", theme)
        await station.start(player)
        print(f"on air: writing to {player.out_dir} (Ctrl-C or 'quit' to stop)", flush=True)
        commands = loop.create_task(_read_commands(station, manager, done))
        await done.wait()
        commands.cancel()
    except (StoreError, WorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await manager.close()
        manager.store.close()
    if player.gaps:
        print(f"played {len(player.played)} track(s); longest gap {max(player.gaps) * 1000:.1f} ms")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.local",
        description="Run one radio station on this machine and write what it plays to files.",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: LOCAL_OUTPUT_DIR)")
    parser.add_argument("--songs", type=int, default=0, help="stop after this many songs (default: run until quit)")
    parser.add_argument("--speed", type=float, default=1.0, help="play this many times faster than real time")
    parser.add_argument("--request", action="append", default=[], metavar="THEME", help="queue a request")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="the station's style preset")
    parser.add_argument("--genre", help="the station's genre")
    parser.add_argument("--theme", help="the station's theme")
    parser.add_argument("--mood", help="the station's mood")
    parser.add_argument(
        "--songwriter",
        choices=["model", "template"],
        default="model",
        help="write songs with the GGUF model (default) or the instant template songwriter",
    )
    parser.add_argument("--steps", type=int, help="diffusion steps (default: the model's)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: CHECKPOINT_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.songs < 0:
        print("--songs must be 0 (no limit) or more", file=sys.stderr)
        return 2
    if not 0.01 <= args.speed <= 10_000:
        print("--speed must be from 0.01 to 10000 (1 = real time)", file=sys.stderr)
        return 2
    if args.steps is not None and not 1 <= args.steps <= 200:
        print("--steps must be from 1 to 200", file=sys.stderr)
        return 2
    try:
        settings = load_bot_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    drop_secrets_from_environment()
    setup_logging(settings.log_level, settings.secrets, settings.log_file)
    return asyncio.run(run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
