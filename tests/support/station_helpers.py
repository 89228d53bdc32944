"""Reading a station's state and putting it on air, for the station tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.local import LocalPlayer
from bot.station import Station


async def pending(station: Station) -> list:
    return await asyncio.to_thread(station.store.pending_jobs, station.guild_id)


async def themes(station: Station, records) -> list[str]:
    jobs = [await asyncio.to_thread(station.store.get_job, r.job_id) for r in records]
    return [job.theme for job in jobs]


def player(tmp_path: Path, speed: float) -> LocalPlayer:
    return LocalPlayer(tmp_path / "out", speed=speed)


async def held_on_air(station: Station, tmp_path: Path) -> LocalPlayer:
    """On air for a listener to whom a track lasts 1000 s: auto-fill runs (a station
    makes its own songs only on air), the first track holds, nothing else plays."""
    listener = player(tmp_path, speed=0.01)
    await station.start(listener)
    return listener
