"""The queue of training runs: one has the trainer, the others wait in line.

`/radio_train` and `/radio_dataset preprocess` add a run (`submit`): it is
checked at once (bot.training.request), stored (bot.store.training) and
started when the trainer is free, in the order the runs came; the answer says
how many runs are ahead of it. A server may have `MAX_WAITING_PER_SERVER` runs
in line (its running one included), all servers together `MAX_WAITING`.

Each run is one row in the store, and its progress is kept there as it goes
(at each change of state, and every `SAVE_SECONDS` while it trains), so
`/radio_train_status` knows the last runs after a restart; runs still queued
when the bot stopped start when it is back (`load`, then `kick`), in the same
order. While a run waits behind another, generation stays paused between the
two (`TrainingRuns.hold_gpu`).

`cancel` takes a queued run out of line, or stops the running one (it keeps
what it learnt). A run that cannot start when its turn comes (its dataset was
removed, its adapter's name is now sung with) fails with the reason, and the
next one starts. What a server sees of its run (the progress message, the
previews) is the caller's: `reporter(row)` gives each run's callback.
No discord import.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot.replies import RadioError
from bot.settings import BotSettings
from bot.store import InvalidValueError, Store, TrainingRunRow
from bot.training.progress import ProgressCallback, TrainingProgress
from bot.training.request import RunRequest, check_request
from bot.training.runs import TrainingBusyError, TrainingRuns
from engine.background import BackgroundTasks

log = logging.getLogger("bot.training.queue")

MAX_WAITING_PER_SERVER = 3
MAX_WAITING = 12
SAVE_SECONDS = 10.0
Reporter = Callable[[TrainingRunRow], ProgressCallback | None]


class QueueFullError(RadioError):
    """No more runs may wait in line (for this server, or at all)."""


def _state(progress: TrainingProgress) -> str:
    return progress.state if progress.finished else "running"


class TrainingQueue:
    def __init__(
        self,
        runs: TrainingRuns,
        store: Store,
        settings: BotSettings,
        reporter: Reporter | None = None,
    ):
        self.runs = runs
        self.store = store
        self.settings = settings
        self.reporter: Reporter = reporter or (lambda row: None)
        self._waiting: list[TrainingRunRow] = []  # queued and running, as last read
        self._saved: dict[int, tuple[str, float]] = {}  # run id -> (state, when) last saved
        self._lock = asyncio.Lock()
        self._tasks = BackgroundTasks(log, "training queue: starting the next run")
        self._closing = False
        runs.hold_gpu = self.others_waiting

    # --- what waits -----------------------------------------------------------------
    def others_waiting(self) -> bool:
        """Does a queued run wait for the trainer? (cheap: the last read)"""
        return any(row.state == "queued" for row in self._waiting)

    @property
    def waiting(self) -> list[TrainingRunRow]:
        """The running run first, then the queued ones in order."""
        return list(self._waiting)

    def ahead_of(self, run_id: int) -> int:
        """How many runs are before run `run_id` (the running one included)."""
        ids = [row.id for row in self._waiting]
        return ids.index(run_id) if run_id in ids else 0

    async def _refresh(self) -> list[TrainingRunRow]:
        self._waiting = await asyncio.to_thread(self.store.waiting_training_runs)
        return self._waiting

    # --- adding and taking out ---------------------------------------------------------
    async def submit(self, request: RunRequest) -> TrainingRunRow:
        """Check and store a run at the end of the line; start it if the trainer is free.
        Raises `InvalidValueError` for a bad value, `QueueFullError` for a full line."""
        request = await asyncio.to_thread(check_request, self.settings, request, self.runs.stations.adapter_in_use)
        async with self._lock:
            waiting = await self._refresh()
            mine = [row for row in waiting if row.guild_id == request.guild_id]
            if len(mine) >= MAX_WAITING_PER_SERVER:
                raise QueueFullError(
                    f"this server has {len(mine)} runs in line already (at most "
                    f"{MAX_WAITING_PER_SERVER}): wait for one to end, or take one out with "
                    "/radio_train_stop"
                )
            if len(waiting) >= MAX_WAITING:
                raise QueueFullError(
                    f"{len(waiting)} runs wait for the trainer already (at most {MAX_WAITING}, "
                    "for all servers): try again later"
                )
            same = [r for r in mine if r.kind == request.kind and r.name == request.name]
            if same:
                what = "adapter" if request.kind == "train" else "dataset"
                allowed = f"a name not already in line (run #{same[0].id} is)"
                raise InvalidValueError(what, request.name, allowed)
            row = await asyncio.to_thread(self._add, request)
            await self._refresh()
        await self.kick()
        return row

    def _add(self, request: RunRequest) -> TrainingRunRow:
        return self.store.add_training_run(
            request.guild_id,
            channel_id=request.channel_id,
            user_id=request.user_id,
            kind=request.kind,
            dataset=request.dataset,
            name=request.name,
            preset=request.preset,
            epochs=request.epochs,
            preview_every=request.preview_every,
        )

    async def cancel(self, run_id: int) -> str:
        """Take a queued run out of line ('cancelled'), or stop the running one
        ('stopping'); `InvalidValueError` when it has ended."""
        async with self._lock:
            row = await asyncio.to_thread(self.store.training_run, run_id)
            if row.state == "queued":
                await asyncio.to_thread(
                    self.store.update_training_run,
                    run_id,
                    state="cancelled",
                    message="taken out of line before it ran",
                    ended_at=time.time(),
                )
                await self._refresh()
                return "cancelled"
        progress = self.runs.progress
        mine = progress is not None and progress.run_id == run_id
        if row.state == "running" and mine and await self.runs.stop():
            return "stopping"
        raise InvalidValueError("run", f"#{run_id}", "a run that is waiting or running")

    # --- running them ------------------------------------------------------------------
    async def kick(self) -> None:
        """Start the next queued run if the trainer is free (again, while one cannot)."""
        async with self._lock:
            while not self._closing and not self.runs.running:
                queued = [row for row in await self._refresh() if row.state == "queued"]
                if not queued:
                    await self.runs.release_gpu()
                    return
                if await self._start(queued[0]):
                    break
            await self._refresh()

    async def _start(self, row: TrainingRunRow) -> bool:
        request = RunRequest(
            guild_id=row.guild_id,
            dataset=row.dataset,
            name=row.name,
            kind=row.kind,
            channel_id=row.channel_id,
            user_id=row.user_id,
            preset=row.preset,
            epochs=row.epochs,
            preview_every=row.preview_every,
            run_id=row.id,
        )
        await asyncio.to_thread(self.store.update_training_run, row.id, state="running", started_at=time.time())
        show = self.reporter(row)
        callback = self._on_progress(row, show)
        try:
            progress = await self.runs.start(request, callback)
        except (InvalidValueError, TrainingBusyError, OSError) as exc:
            why = f"it could not start: {exc}"
            log.warning("training run #%d %s", row.id, why)
            await asyncio.to_thread(
                self.store.update_training_run,
                row.id,
                state="failed",
                message=why,
                ended_at=time.time(),
            )
            if show is not None:
                failed = TrainingProgress(
                    row.name,
                    row.dataset,
                    row.preset,
                    guild_id=row.guild_id,
                    run_id=row.id,
                    kind=row.kind,
                    state="failed",
                    message=why,
                )
                await show(failed)
            return False
        if self.runs.progress is progress:  # the watcher has reported nothing newer yet
            await callback(progress)
        return True

    def _on_progress(self, row: TrainingRunRow, show: ProgressCallback | None) -> ProgressCallback:
        async def on_progress(progress: TrainingProgress) -> None:
            await self._save(row.id, progress)
            if show is not None:
                await show(progress)
            if progress.finished:
                self._tasks.spawn(self._next_after_this())

        return on_progress

    async def _next_after_this(self) -> None:
        await self.runs.wait()  # the watcher ends right after its last report
        await self.kick()

    async def _save(self, run_id: int, progress: TrainingProgress) -> None:
        state = _state(progress)
        last_state, saved_at = self._saved.get(run_id, ("", 0.0))
        now = time.monotonic()
        if state == last_state and now - saved_at < SAVE_SECONDS:
            return
        self._saved[run_id] = (state, now)
        changes = {
            "state": state,
            "step": progress.step,
            "total_steps": progress.total_steps,
            "epoch": progress.epoch,
            "loss": progress.loss,
            "adapter": progress.key,
            "message": progress.message,
        }
        if progress.finished:
            changes["ended_at"] = time.time()
            self._saved.pop(run_id, None)
        await asyncio.to_thread(lambda: self.store.update_training_run(run_id, **changes))

    # --- restarts ------------------------------------------------------------------------
    async def load(self) -> None:
        """At start-up, after `TrainingRuns.recover`: settle the runs a restart cut off."""
        found = self.runs.recovered[0] if self.runs.recovered else None
        for row in await self._refresh():
            if row.state != "running":
                continue
            if found is not None and found.run_id == row.id:
                await self._save(row.id, found)
            else:
                await asyncio.to_thread(
                    self.store.update_training_run,
                    row.id,
                    state="failed",
                    message="the bot restarted before this run could start",
                    ended_at=time.time(),
                )
        await self._refresh()

    async def close(self) -> None:
        self._closing = True
        await self._tasks.cancel()
