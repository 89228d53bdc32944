"""StationManager: every guild's station, and who gets the GPU worker next.

One song backend serves all stations (`engine.worker.backend`: the local
worker process, or song workers on a Ray cluster, where each job goes to the
worker with the shortest queue). The manager's scheduler waits until the
backend has a free slot (`wait_for_slot`), then takes one job:
a listener's request from the next station in round-robin order that has one,
else an auto-fill job the same way. So no station can starve another, requests
anywhere come before auto-fill anywhere, and the stations together never ask
for more concurrent work than the worker can do.

Batches. With `BATCH_SIZE` above 1 (as the worker's GPU tier allows it), when
more songs are due than that first one (a buffer that needs several songs,
several requests waiting), the scheduler takes more jobs the same way, up to
the batch size, and hands them over as one generation (`submit_batch`). A job
joins only if it can share the batch (same adapter, scale and steps, a similar
length: `engine.worker.protocol.can_share_batch`); one that cannot is kept for the next
free slot. A song never waits for a batch to fill: what is due goes at once.

At start-up the manager calls `Store.recover()` (jobs in flight go back to the
queue, the track that was playing back to its buffer, vanished files are
logged and skipped), prunes track files to the disk budget, and opens a
station for every guild in the store. `pause_generation` / `resume_generation`
are the GPU-busy switch for the trainer: stations keep playing their buffers
and then replay their libraries meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from bot.settings import BotSettings
from bot.station import Station, StationConfig
from bot.store import Job, RecoveryReport, Store, UnknownGuildError, check_id
from engine.background import BackgroundTasks
from engine.worker.backend import SongBackend, backend_from_settings
from engine.worker.client import WorkerError, WorkerEvent
from engine.worker.process import WorkerConfig
from engine.worker.protocol import SongJob, can_share_batch

log = logging.getLogger("bot.station.manager")


class StationManager:
    """The stations of every guild and the scheduler that feeds the worker.

    The manager listens to the client's events, so stations hear when the
    worker is paused, resumed or unavailable. With `owns_client` (the default)
    `close()` closes the client too; without, the client outlives the manager
    (the jobs it still makes for this manager are then dropped, and the store
    requeues them when it is opened again).
    """

    def __init__(
        self,
        store: Store,
        client: SongBackend,
        config: StationConfig,
        *,
        owns_client: bool = True,
    ):
        self.store = store
        self.client = client
        self.config = config
        self.owns_client = owns_client
        self._stations: dict[int, Station] = {}
        self._changed = asyncio.Event()
        self._next = 0  # round-robin start among stations
        self._scheduler: asyncio.Task | None = None
        self._jobs = BackgroundTasks(log, "song job")
        self._held: tuple[Station, Job, SongJob] | None = None  # taken; did not fit a batch
        self.recovery: RecoveryReport | None = None
        client.on_event = self.on_worker_event

    # --- life cycle -----------------------------------------------------------
    async def start(self) -> RecoveryReport:
        """Recover the store, prune, open every known station, start scheduling.

        The worker client must be started already (or be starting).
        """
        self.recovery = await asyncio.to_thread(self.store.recover)
        report = self.recovery
        if report.requeued_jobs or report.interrupted_tracks or report.missing_tracks:
            log.info(
                "recovered: %d job(s) back in the queue, %d track(s) back in a buffer, "
                "%d vanished track file(s) skipped, %d job(s) failed",
                len(report.requeued_jobs),
                len(report.interrupted_tracks),
                len(report.missing_tracks),
                len(report.failed_jobs),
            )
        await self.prune_tracks()
        for guild_id in await asyncio.to_thread(self.store.guild_ids):
            await self._open(guild_id)
        self._scheduler = asyncio.get_running_loop().create_task(self._schedule())
        return report

    async def close(self) -> None:
        """Stop every station, the scheduler and the worker (jobs in flight stay
        in flight in the store, so the next start makes them). Each step runs even
        when an earlier one failed (it is logged)."""
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
            self._scheduler = None
        await self._close_stations()
        if self.owns_client:
            await isolated("closing the worker", self.client.close())
        else:
            for task in self._jobs:
                task.cancel()
        await self._jobs.wait()
        await self._close_stations()  # their last background work, e.g. a top-up

    async def _close_stations(self) -> None:
        for station in self._stations.values():
            await isolated(f"closing station {station.guild_id}", station.close())

    async def __aenter__(self) -> StationManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- stations -------------------------------------------------------------
    async def add_station(self, guild_id: int) -> Station:
        """The guild's station, created (with default settings) if it is new."""
        check_id("guild_id", guild_id)
        if guild_id in self._stations:
            return self._stations[guild_id]
        await asyncio.to_thread(self.store.ensure_guild, guild_id)
        return await self._open(guild_id)

    def station(self, guild_id: int) -> Station:
        """The station of a known guild; `UnknownGuildError` otherwise."""
        check_id("guild_id", guild_id)
        try:
            return self._stations[guild_id]
        except KeyError:
            raise UnknownGuildError(guild_id) from None

    @property
    def stations(self) -> list[Station]:
        return list(self._stations.values())

    async def _open(self, guild_id: int) -> Station:
        station = Station(guild_id, self.store, self, self.config)
        self._stations[guild_id] = station
        await station.load()
        return station

    # --- the GPU-busy switch ----------------------------------------------------
    @property
    def busy_reason(self) -> str | None:
        """Why no fresh songs are being made: the GPU is busy or the worker is down."""
        if self.client.busy_reason is not None:
            return f"the GPU is busy: {self.client.busy_reason}"
        if self.client.unavailable_reason is not None:
            return f"the music worker is unavailable: {self.client.unavailable_reason}"
        return None

    async def pause_generation(self, reason: str, *, release_gpu: bool = True) -> None:
        """Make no new songs (e.g. while an adapter trains); returns once the GPU is free."""
        await self.client.pause(reason, release_gpu=release_gpu)
        self._notify_stations()

    async def resume_generation(self) -> None:
        await self.client.resume()
        self._notify_stations()
        self.wake()

    def adapter_in_use(self, key: str) -> bool:
        """Does any station sing with adapter `key`? (blocking: the store; call in a thread)"""
        return bool(self.store.guilds_using_adapter(key))

    async def prune_tracks(self) -> None:
        """Keep track files within the disk budget: played ones first, then the
        auto-fill songs buffered by stations that are off air (see `Store.prune_tracks`)."""
        on_air = [station.guild_id for station in self._stations.values() if station.playing]
        await asyncio.to_thread(self.store.prune_tracks, self.config.disk_budget_bytes, on_air=on_air)

    def on_worker_event(self, event: WorkerEvent) -> None:
        """`WorkerClient(on_event=...)`: stations re-check what they can play."""
        log.info("worker: %s", event.message)
        self._notify_stations()
        self.wake()

    def _notify_stations(self) -> None:
        for station in self._stations.values():
            station.notify()

    # --- scheduling -----------------------------------------------------------
    def wake(self) -> None:
        """Jobs may be waiting: the scheduler looks again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _schedule(self) -> None:
        while True:
            await self.client.wait_for_slot()
            changed = self._changed
            batch = await self._pick_batch()
            if not batch:
                await changed.wait()
                continue
            jobs = [song for _station, _job, song in batch]
            callbacks = [station.job_callbacks(job) for station, job, _song in batch]
            try:
                if len(batch) == 1:
                    handles = [self.client.submit(jobs[0], **callbacks[0])]
                else:
                    handles = self.client.submit_batch(jobs, callbacks)
            except WorkerError as exc:
                for station, job, _song in batch:
                    log.error("guild %d: job %d refused: %s", station.guild_id, job.id, exc)
                    self._track(station.refuse_job(job, "worker_start_failed"))
                continue
            for (station, job, _song), handle in zip(batch, handles, strict=True):
                self._track(station.run_job(job, handle))

    async def _pick_batch(self) -> list[tuple[Station, Job, SongJob]]:
        """The jobs of the next generation: the next job, then more while more are due,
        up to the worker's batch size, each able to share the batch."""
        first = self._held or await self._pick()
        self._held = None
        if first is None:
            return []
        batch = [first]
        while len(batch) < self.client.batch_size:
            picked = await self._pick()
            if picked is None:
                break
            if not can_share_batch([song for _s, _j, song in batch], picked[2]):
                self._held = picked
                break
            batch.append(picked)
        return batch

    async def _pick(self) -> tuple[Station, Job, SongJob] | None:
        """The next job: requests round-robin across stations, then auto-fill."""
        stations = list(self._stations.values())
        if not stations:
            return None
        start = self._next % len(stations)
        order = stations[start:] + stations[:start]
        kinds = await asyncio.to_thread(self.store.queued_kinds)  # one query for all stations
        for wanted in ("request", "auto"):
            for station in order:
                if kinds.get(station.guild_id) != wanted:
                    continue
                try:
                    taken = await station.take_job()
                except Exception as exc:  # one station's trouble must not stop every server
                    log.error("guild %d: cannot take its next job: %s", station.guild_id, exc)
                    log.debug("take_job failed", exc_info=exc)
                    continue
                if taken is not None:
                    self._next = stations.index(station) + 1
                    return station, *taken
        return None

    def _track(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._jobs.spawn(coro)


async def isolated(what: str, step: Coroutine[Any, Any, Any]) -> None:
    """Run one shutdown step; a failure is logged (one line, the traceback at debug
    level) and does not keep the next steps from running."""
    try:
        await step
    except Exception as exc:
        log.error("%s failed: %s: %s", what, type(exc).__name__, exc)
        log.debug("%s failed", what, exc_info=exc)


def manager_from_settings(
    settings: BotSettings, worker: WorkerConfig | None = None, **station_changes: object
) -> StationManager:
    """Store, song backend (WORKER_BACKEND) and manager as `.env` says (the bot and the
    local listener)."""
    client = backend_from_settings(settings, worker)
    config = StationConfig.from_settings(settings, **station_changes)
    return StationManager(Store.from_settings(settings), client, config)
