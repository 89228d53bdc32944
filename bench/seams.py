"""Benchmark: the silence between two songs, as a Discord listener would hear it.

    .venv/bin/python -m bench.seams                    # 20 tracks of 2 s
    .venv/bin/python -m bench.seams --tracks 40 --seconds 1

The whole bot runs against the local fake Discord (tests/support/fake_discord.py): the
real discord.py client, the real station and voice player (ffmpeg passing the
Ogg/Opus through), the real worker process with the tiny checkpoint (built
here). The voice connection is tests/support/fake_voice.py, whose player is discord.py's
own `AudioPlayer` reading the source every 20 ms, as on Discord. Tracks are
queued ready-made, so what is measured is the hand-over from one song to the
next: last audio frame of a song to first audio frame of the next. Prints the
figures; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from engine.checkpoint.tiny import write_tiny_checkpoint
from tests.support.bot_world import World, add_server, start_bot, world_settings
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_voice import VoiceLog
from tests.support.seams import measure_seams


async def run(tracks: int, seconds: float, root: Path) -> str:
    checkpoint = await asyncio.to_thread(write_tiny_checkpoint, root / "tiny")
    async with FakeDiscord() as fake:
        server = add_server(fake, "bench")
        settings = world_settings(root / "radio", checkpoint, fake.token)
        voice = VoiceLog()
        async with start_bot(fake, settings, voice) as bot:
            world = World(fake, bot, voice, settings, [server])
            figures = await measure_seams(world, server, root / "tracks", tracks, seconds)
    return figures.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        summary = asyncio.run(run(args.tracks, args.seconds, Path(folder)))
    print(f"{args.tracks} tracks of {args.seconds:g} s, load average {os.getloadavg()[0]:.1f}")
    print(summary)


if __name__ == "__main__":
    main()
