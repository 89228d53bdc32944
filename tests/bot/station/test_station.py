"""The station with the real worker process (tiny checkpoint, template songwriter),
real SQLite and real files, played through the local listener's clock player.

One worker is shared by the module; each test opens its own database and
StationManager on it. Waits are on the station's change events, never on time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from bot.station import Station, StationConfig
from bot.station.manager import StationManager
from bot.store import InvalidValueError, QueueFullError, Store, UnknownGuildError
from engine.worker.client import WorkerClient
from tests.support.radio_helpers import template_worker, until
from tests.support.station_helpers import held_on_air, pending, player, themes

module_loop = pytest.mark.asyncio(loop_scope="module")


def depth(store: Store, guild_id: int) -> int:
    """Buffered tracks plus jobs waiting or being made, in one consistent read."""
    with sqlite3.connect(store.path) as db:
        return db.execute(
            "SELECT (SELECT COUNT(*) FROM tracks WHERE guild_id = ? AND status = 'buffered')"
            " + (SELECT COUNT(*) FROM jobs WHERE guild_id = ?"
            " AND status IN ('queued', 'writing', 'singing'))",
            (guild_id, guild_id),
        ).fetchone()[0]


async def buffered(station: Station) -> list:
    return await asyncio.to_thread(station.store.buffered_tracks, station.guild_id)


# --- the queue ------------------------------------------------------------------


@module_loop
async def test_requests_round_robin_between_listeners_within_the_limits(radio, client) -> None:
    await client.pause("holding the queue for the test", release_gpu=False)
    manager = await radio(max_per_user=3, max_per_guild=6)
    station = await manager.add_station(10)
    for user, theme in [(1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (3, "c1"), (3, "c2")]:
        await station.request(user, f"user{user}", theme)
    with pytest.raises(QueueFullError, match="allowed is at most 3 per listener"):
        await station.request(1, "user1", "a4")
    with pytest.raises(QueueFullError, match="allowed is at most 6"):
        await station.request(4, "user4", "d1")
    # Six requests fill more than the buffer: the auto-fill jobs were withdrawn.
    queue = (await station.status()).queue
    assert [job.theme for job in queue] == ["a1", "b1", "c1", "a2", "c2", "a3"]

    await client.resume()
    await until(lambda: len(station.buffered) == 6, station.wait_changed)
    made = await buffered(station)
    assert await themes(station, made) == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert [r.requester_name for r in made][:3] == ["user1", "user2", "user3"]


@module_loop
async def test_requests_come_before_auto_fill_across_stations_and_in_the_buffer(radio, client, tmp_path: Path) -> None:
    await client.pause("holding the queue for the test", release_gpu=False)
    manager = await radio(buffer_size=2)
    auto = await manager.add_station(21)
    listener = await held_on_air(auto, tmp_path)  # on air in auto mode: two auto-fill jobs
    quiet = await manager.add_station(22)
    await quiet.set_auto_mode(False)
    await quiet.request(5, "five", "first wish")
    await quiet.request(6, "six", "second wish")
    assert [job.kind for job in await pending(auto)] == ["auto", "auto"]
    await client.resume()
    await until(lambda: len(auto.buffered) == 2 and len(quiet.buffered) == 2, auto.wait_changed)
    made = sorted(await buffered(quiet), key=lambda r: r.id)
    first_auto = listener.played[0].track_id
    assert all(r.id < first_auto for r in made)  # both requests were made first

    # A request made after two auto-fill songs still plays before them.
    await auto.request(7, "seven", "jump the queue")
    await until(lambda: len(auto.buffered) == 3, auto.wait_changed)

    def now_playing(requester: int | None) -> bool:
        play = auto.now_playing
        return play is not None and play.track.id != first_auto and (play.track.requester_id == requester)

    auto.skip()  # the held auto-fill song ends: the request comes next
    await until(lambda: now_playing(7), auto.wait_changed)
    auto.skip()
    await until(lambda: now_playing(None), auto.wait_changed)
    played = reversed(await auto.history(3))
    assert [play.track.requester_name for play in played] == [None, "seven", None]


@module_loop
async def test_auto_mode_keeps_the_buffer_exactly_buffer_size_deep(radio, tmp_path) -> None:
    manager = await radio(buffer_size=2)
    station = await manager.add_station(30)
    assert await pending(station) == []  # off air: no songs of its own
    listener = player(tmp_path, speed=5)
    depths: list[int] = []

    async def watch() -> None:
        while True:
            depths.append(depth(manager.store, 30))
            await station.wait_changed()

    watcher = asyncio.get_running_loop().create_task(watch())
    await station.start(listener)
    await until(lambda: len(listener.played) >= 4, station.wait_changed)
    watcher.cancel()
    assert max(depths) == 2, depths
    await station.stop()  # off air: the auto-fill jobs still waiting are withdrawn
    assert not [job for job in await pending(station) if job.status == "queued"]
    stats = await station.stats()
    assert stats.songs_generated <= len(listener.played) + 2


# --- restarts, crashes, files -------------------------------------------------------


@module_loop
async def test_a_restart_keeps_the_queue_the_buffer_and_the_playing_track(
    radio, client, settings, tmp_path: Path
) -> None:
    path = tmp_path / "restart.sqlite3"
    first = StationManager(Store(path), WorkerClient(template_worker(settings)), StationConfig(default_duration=10))
    await first.client.start()
    await first.start()
    station = await first.add_station(40)
    await station.set_auto_mode(False)
    receipts = [await station.request(u, f"user{u}", f"wish {u}") for u in (1, 2, 3, 4, 5)]
    await until(lambda: len(station.buffered) >= 1, station.wait_changed)
    listener = player(tmp_path, speed=0.01)  # the first track plays for ages
    await station.start(listener)
    await until(lambda: station.now_playing is not None, station.wait_changed)
    playing = station.now_playing.track
    before = {job.id: job.status for job in await pending(station)}
    waiting = [r.id for r in await buffered(station)]
    assert "queued" in before.values()  # closed mid-queue
    await first.close()
    first.store.close()

    manager = await radio(path)  # the module's worker plays the part of the new one
    report = manager.recovery
    assert report.interrupted_tracks == [playing.id]
    assert sorted(report.requeued_jobs) == sorted(job_id for job_id, status in before.items() if status != "queued")
    station = manager.station(40)
    assert [r.id for r in await buffered(station)][:1] == [playing.id]
    assert set(waiting) <= {r.id for r in await buffered(station)}
    await until(lambda: len(station.buffered) == 5, station.wait_changed)
    jobs = await asyncio.to_thread(lambda: [manager.store.get_job(r.job.id) for r in receipts])
    assert [job.status for job in jobs] == ["done"] * 5  # nothing lost, nothing doubled
    made = await buffered(station)
    assert sorted(r.job_id for r in made) == sorted(r.job.id for r in receipts)


@module_loop
async def test_a_job_that_kills_the_worker_twice_fails_and_the_station_goes_on(radio, client) -> None:
    manager = await radio()
    station = await manager.add_station(50)
    await station.set_auto_mode(False)
    receipt = await station.request(1, "user1", "doomed song")
    killed: list[int] = []

    async def kill_when_singing() -> bool:
        singing = any(text.startswith("singing") for text in station.making.values())
        pid = client.pid
        if singing and pid is not None and pid not in killed:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)
        job = await asyncio.to_thread(manager.store.get_job, receipt.job.id)
        return job.status == "failed"

    await until(kill_when_singing, station.wait_changed)
    job = await asyncio.to_thread(manager.store.get_job, receipt.job.id)
    assert job.failure_reason == "worker_died (SIGKILL)" and len(killed) == 2
    stats = await station.stats()
    assert stats.failures_by_reason == {"worker_died (SIGKILL)": 2}  # both attempts count

    await station.request(1, "user1", "a song that lives")
    await until(lambda: len(station.buffered) == 1, station.wait_changed)


@module_loop
async def test_a_vanished_track_file_is_skipped_with_a_log_line(
    radio, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = await radio(buffer_size=2)
    station = await manager.add_station(60)
    await held_on_air(station, tmp_path)
    await until(lambda: len(station.buffered) == 2, station.wait_changed)
    await station.set_auto_mode(False)
    await station.stop()
    gone, kept = await buffered(station)
    gone.path.unlink()
    listener = player(tmp_path, speed=1000)

    async def marked_missing() -> bool:
        return (await asyncio.to_thread(manager.store.get_track, gone.id)).status == "missing"

    with caplog.at_level(logging.WARNING):
        await station.start(listener)
        await until(lambda: len(listener.played) == 1, station.wait_changed)
        await until(marked_missing, station.wait_changed)
    assert [line.track_id for line in listener.played] == [kept.id]
    assert station.skipped_missing == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any("vanished" in line and f"track {gone.id} " in line for line in lines), lines


@module_loop
async def test_played_tracks_are_pruned_to_the_disk_budget_never_buffered_or_playing(radio, tmp_path: Path) -> None:
    manager = await radio(buffer_size=2, disk_budget_bytes=1)
    station = await manager.add_station(70)
    listener = player(tmp_path, speed=1000)
    await station.start(listener)
    await until(lambda: len(listener.played) >= 4, station.wait_changed)
    await station.stop()
    await until(lambda: not station.making, station.wait_changed)  # what was being made is in
    await asyncio.to_thread(manager.store.prune_tracks, 1)
    tracks = await asyncio.to_thread(lambda: [manager.store.get_track(line.track_id) for line in listener.played])
    assert {t.status for t in tracks} == {"pruned"}
    assert not any(t.path.exists() for t in tracks)
    for record in await buffered(station):
        assert record.path.is_file()


@module_loop
async def test_stats_count_generation_time_and_underruns(radio, tmp_path: Path) -> None:
    manager = await radio(buffer_size=1)
    station = await manager.add_station(80)
    listener = player(tmp_path, speed=10_000)  # plays faster than anything can be made

    async def two_underruns() -> bool:
        return (await station.stats()).underruns >= 2

    await station.start(listener)
    await until(two_underruns, station.wait_changed)
    await station.stop()
    stats = await station.stats()
    records = await asyncio.to_thread(manager.store.library, 80)
    assert stats.songs_generated >= 2 and stats.generation_p50 is not None
    assert min(r.generation_seconds for r in records) <= stats.generation_p50
    assert all(r.generation_seconds >= 0.05 for r in records)  # the worker's time, not 0
    with sqlite3.connect(manager.store.path) as db:
        seconds = [row[0] for row in db.execute("SELECT seconds FROM events WHERE kind = 'underrun'")]
    assert all(s is not None and s > 0 for s in seconds)


@module_loop
async def test_while_the_gpu_is_busy_the_station_replays_its_library_and_says_so(radio, client, tmp_path: Path) -> None:
    manager = await radio(buffer_size=1)
    station = await manager.add_station(90)
    listener = player(tmp_path, speed=1000)
    await station.start(listener)
    await until(lambda: len(listener.played) >= 3, station.wait_changed)
    await manager.pause_generation("training an adapter", release_gpu=False)
    await until(lambda: any(p.source == "replay" for p in listener.played), station.wait_changed)
    status = await station.status()
    assert status.busy_reason == "the GPU is busy: training an adapter"
    assert any("replaying the library" in note for note in status.notes)
    count = len(listener.played)
    await manager.resume_generation()
    await until(lambda: any(p.source == "fresh" for p in listener.played[count:]), station.wait_changed)


@module_loop
async def test_skip_pause_resume_stop_now_playing_and_history(radio, tmp_path: Path) -> None:
    manager = await radio(buffer_size=2)
    station = await manager.add_station(100)
    listener = player(tmp_path, speed=0.01)  # nothing ends by itself during the test
    await station.start(listener)
    await until(lambda: len(station.buffered) == 2, station.wait_changed)
    await until(lambda: station.now_playing is not None, station.wait_changed)
    first = station.now_playing
    station.pause()
    assert (await station.status()).state == "paused"
    station.resume()
    status = await station.status()
    assert status.state == "playing" and status.now_playing.id == first.id
    assert station.skip() == first
    await until(
        lambda: station.now_playing is not None and station.now_playing.id != first.id,
        station.wait_changed,
    )
    await station.stop()
    assert (await station.status()).state == "stopped" and station.now_playing is None
    history = await station.history(5)
    assert [p.outcome for p in history] == ["skipped", "skipped"]
    assert history[1].id == first.id


# --- bad input ----------------------------------------------------------------------


@module_loop
async def test_bad_input_gets_clear_errors(radio) -> None:
    manager = await radio()
    station = await manager.add_station(110)
    with pytest.raises(UnknownGuildError, match="unknown guild 999"):
        manager.station(999)
    with pytest.raises(InvalidValueError, match=r"guild_id 0.*positive integer"):
        await manager.add_station(0)
    with pytest.raises(InvalidValueError, match=r"max_per_user -1.*from 1 to 1000"):
        StationConfig(max_per_user=-1)
    with pytest.raises(InvalidValueError, match=r"buffer_size 0.*from 1 to 20"):
        StationConfig(buffer_size=0)
    with pytest.raises(InvalidValueError, match=r"theme.*10000 characters.*at most 300"):
        await station.request(1, "user1", "x" * 10_000)
    with pytest.raises(InvalidValueError, match=r"theme.*10000 characters.*at most 200"):
        await station.set_style(theme="x" * 10_000)
    with pytest.raises(InvalidValueError, match=r"style setting 'colour'.*genre, theme"):
        await station.set_style(colour="red")
    with pytest.raises(InvalidValueError, match=r"preset 'nope'.*lofi"):
        await station.apply_preset("nope")
    with pytest.raises(InvalidValueError, match=r"length 5000.*station's limit"):
        await station.request(1, "user1", "long", length=5000)
    with pytest.raises(InvalidValueError, match=r"auto_mode 'yes'.*true or false"):
        await station.set_auto_mode("yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match=r"setting 'genre'.*voice_channel_id"):
        await station.update_settings(genre="rock")
    assert all(job.kind == "auto" for job in await pending(station))  # no request got in
    settings = await station.apply_preset("lofi")
    assert settings.genre == "lofi hip hop" and settings.preset == "lofi"
    settings = await station.set_style(mood="sleepy", max_length=45)
    assert settings.preset is None and settings.max_length == 45
