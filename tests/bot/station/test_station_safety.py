"""The station's limits and failure paths with the real worker (tiny checkpoint,
template songwriter) and real SQLite: a failed save, a job the worker format
refuses, auto-fill while nobody listens, and the disk budget across stations.
The fixtures are in this folder's conftest.py (one worker for this module)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.station import StationConfig
from bot.station.manager import StationManager
from bot.store import Store, StoreError
from tests.support.radio_helpers import until
from tests.support.station_helpers import held_on_air, pending

module_loop = pytest.mark.asyncio(loop_scope="module")


class DiskFullStore(Store):
    """A store whose saving of finished tracks fails, as on a full disk."""

    failed: list[Path]

    def add_track(self, guild_id, track, **options):  # type: ignore[no-untyped-def]
        if options.get("job_id") is not None:
            self.failed.append(Path(track.path))
            raise StoreError("database or disk is full")
        return super().add_track(guild_id, track, **options)


@module_loop
async def test_a_failed_save_requeues_the_job_then_fails_it_and_leaves_no_file(
    client,
    tmp_path: Path,
) -> None:
    store = DiskFullStore(tmp_path / "full.sqlite3")
    store.failed = []
    manager = StationManager(store, client, StationConfig(default_duration=10, max_per_user=1), owns_client=False)
    await manager.start()
    try:
        station = await manager.add_station(7)
        receipt = await station.request(1, "one", "a song the disk cannot hold")

        async def failed() -> bool:
            job = await asyncio.to_thread(store.get_job, receipt.job.id)
            return job.status == "failed"

        await until(failed, station.wait_changed)
        job = await asyncio.to_thread(store.get_job, receipt.job.id)
        assert job.failure_reason == "save_failed" and job.attempts == 2  # retried once
        assert len(store.failed) == 2 and not any(path.exists() for path in store.failed)
        stats = await station.stats()
        assert stats.failures_by_reason == {"save_failed": 2}
        # The listener's slot is free again (MAX_QUEUE_PER_USER=1).
        await station.request(1, "one", "another try")
    finally:
        await manager.close()
        store.close()


@module_loop
async def test_a_job_the_worker_format_refuses_fails_alone_and_scheduling_goes_on(
    radio,
    tmp_path: Path,
) -> None:
    path = tmp_path / "radio.sqlite3"
    with Store(path) as store:
        for guild in (8, 9):
            store.ensure_guild(guild)
            store.update_guild_settings(guild, auto_mode=False)
    with sqlite3.connect(path) as db:  # a value written before the store checked it
        db.execute("UPDATE guild_settings SET adapter = 'tonal\n' WHERE guild_id = 8")
    manager = await radio(path)
    broken, healthy = manager.station(8), manager.station(9)
    bad = await broken.request(1, "one", "sung with a broken adapter name")
    await healthy.request(2, "two", "sung all the same")

    async def bad_failed() -> bool:
        job = await asyncio.to_thread(manager.store.get_job, bad.job.id)
        return job.status == "failed"

    await until(bad_failed, broken.wait_changed)
    assert (await asyncio.to_thread(manager.store.get_job, bad.job.id)).failure_reason == "bad_job"
    await until(lambda: len(healthy.buffered) == 1, healthy.wait_changed)


@module_loop
async def test_auto_fill_pauses_while_nobody_listens_requests_do_not(
    radio,
    tmp_path: Path,
) -> None:
    manager = await radio(buffer_size=2)
    station = await manager.add_station(11)
    assert await pending(station) == []  # off air: no songs of its own
    await held_on_air(station, tmp_path)
    await until(lambda: len(station.buffered) == 2, station.wait_changed)
    station.set_audience(False)
    station.skip()  # a buffered song starts; nobody listens, so none is made to replace it

    async def settled() -> bool:
        return len(station.buffered) == 1 and not await pending(station)

    await until(settled, station.wait_changed)
    await station.request(3, "three", "for nobody, but asked for")
    await until(lambda: len(station.buffered) == 2, station.wait_changed)
    assert [t.requester_id for t in station.buffered] == [None, 3]
    assert not await pending(station)
    station.set_audience(True)  # someone is back: the station tops up its own songs again
    station.skip()  # the request plays; one song of its own is made to keep two ready

    async def topped_up() -> bool:
        return [t.requester_id for t in station.buffered] == [None, None]

    await until(topped_up, station.wait_changed)


@module_loop
async def test_over_the_budget_off_air_stations_lose_their_own_buffered_songs_first(
    radio,
    tmp_path: Path,
) -> None:
    manager = await radio(buffer_size=1, disk_budget_bytes=1)
    off, on = await manager.add_station(12), await manager.add_station(13)
    await held_on_air(off, tmp_path / "off")
    await held_on_air(on, tmp_path / "on")
    await until(lambda: len(off.buffered) == 1, off.wait_changed)
    await until(lambda: len(on.buffered) == 1, on.wait_changed)
    await off.stop()
    await off.request(4, "four", "a listener's song waits")
    await until(lambda: len(off.buffered) == 2, off.wait_changed)
    await manager.prune_tracks()
    statuses = {
        record.id: (await asyncio.to_thread(manager.store.get_track, record.id)).status
        for record in [*off.buffered, *on.buffered]
    }
    own, asked = off.buffered
    assert statuses[own.id] == "pruned" and not own.path.exists()
    assert statuses[asked.id] == "buffered" and asked.path.exists()  # requests are kept
    assert statuses[on.buffered[0].id] == "buffered"  # so are the songs of stations on air
