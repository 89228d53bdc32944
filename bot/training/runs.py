"""Adapter training launched from the bot: one run at a time, with the GPU to itself.

`TrainingRuns.start` checks the request (bot.training.request: the dataset,
adapter name, trainer preset, epochs), pauses generation (`StationManager.
pause_generation`: the worker process stops and frees the GPU; stations play
their buffers, then replay their libraries, and say so), and starts the shared
trainer in its own process (`training.launcher.launch_training`) with
preprocessing first (`TrainConfig.preprocess` with the dataset as `audio_dir`),
or, for a preprocess run, preprocessing alone. Runs wait their turn in
bot.training.queue; while another waits, generation stays paused between them
(`hold_gpu`), so the worker is not started only to be stopped again.
Who may start, see and stop a run is decided before (bot.ownership); a run
belongs to the server it was started from, and so does its adapter
(`ADAPTERS_DIR/g<server id>-<name>/`, see bot.adapter_library). With a `place`
(`training.ray_launcher.RayTrainingPlace`, WORKER_BACKEND=ray) the run goes to the
Ray cluster instead, and generation is paused only when the cluster has no GPU
to spare for it.

A watcher task reads the trainer's progress events on a timer in a thread, so
the event loop never waits on the disk or the child, and hands each change to
the caller's `on_progress` (before the run's folder is removed, so the
before/after clips it names can still be posted). The loss history of the
current (or last) run is kept for the loss curve (`history`). When the run
ends (done, stopped or failed) the adapter the trainer saved (`final/adapter`,
diffusers naming) is copied into ADAPTERS_DIR, replacing an older one of that
name whole unless a station sings with it (then it gets the next free name),
the run's folder is removed, and generation resumes.

Crashes and shutdown: the run is recorded on disk while it goes
(bot.training.record), so a bot killed mid-run finds it at the next start
(`recover`, before the worker starts). On shutdown (`close`) the trainer is
stopped first and what it learnt exported; generation is not resumed then,
so the worker is never started again on the way out. No discord import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from bot.adapter_library import key_name
from bot.settings import BotSettings
from bot.training.files import console_tail, export_adapter, free_key, renamed_note
from bot.training.progress import EXPORTING, ProgressCallback, TrainingProgress, apply_event
from bot.training.record import (
    RunRecord,
    clear_record,
    prune_run_folders,
    read_record,
    remove_run_folder,
    stop_orphan,
    write_record,
)
from bot.training.request import RunRequest, build_run
from engine.settings import child_environment
from engine.text_safety import hide_paths

log = logging.getLogger("bot.training.runs")

#: What every station says while a run has the GPU (no server's adapter named).
TRAINING_REASON = "an adapter is training"


class TrainingBusyError(RuntimeError):
    """A run is already going: one GPU, one training at a time."""


class TrainingPlace(Protocol):
    """Somewhere else to train (`training.ray_launcher.RayTrainingPlace`); blocking calls."""

    def has_spare_gpu(self) -> bool: ...

    def launch(self, config: Any, env: dict[str, str] | None = None) -> Any: ...


class GenerationSwitch(Protocol):
    """What a run needs of the stations (`bot.station.manager.StationManager`)."""

    async def pause_generation(self, reason: str, *, release_gpu: bool = True) -> None: ...

    async def resume_generation(self) -> None: ...

    def adapter_in_use(self, key: str) -> bool:
        """Does a station sing with adapter `key`? (blocking: called in a thread)"""
        ...


class TrainingRuns:
    """The bot's training runs. `overrides` are `TrainConfig` values that win over
    presets (tests use them for tiny, fast runs); `env` goes to the child."""

    def __init__(
        self,
        stations: GenerationSwitch,
        settings: BotSettings,
        *,
        overrides: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        poll_seconds: float = 2.0,
        place: TrainingPlace | None = None,
    ):
        self.stations = stations
        self.place = place
        self.settings = settings
        self.overrides = dict(overrides or {})
        self.env = env
        self.poll_seconds = poll_seconds
        self.progress: TrainingProgress | None = None  # the current run, or the last one
        #: [step, loss] and [step, validation loss] of that run, for its loss curve.
        self.history: list[list[float]] = []
        self.val_history: list[list[float]] = []
        #: Does another run wait for the GPU? Then generation stays paused (the queue sets it).
        self.hold_gpu: Callable[[], bool] = lambda: False
        #: A run the previous bot lost, as `recover` found it, and its channel.
        self.recovered: tuple[TrainingProgress, int | None] | None = None
        self._job: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._starting = False
        self._closing = False
        self._gpu_held = False  # generation stayed paused for a run waiting in line

    @property
    def running(self) -> bool:
        return self._starting or (self._watcher is not None and not self._watcher.done())

    async def start(self, request: RunRequest, on_progress: ProgressCallback | None = None) -> TrainingProgress:
        """Check the request, free the GPU and start its run; returns once it runs.
        Progress is announced in `request.channel_id` after a restart.

        Raises `TrainingBusyError` while a run is going and `InvalidValueError`
        for a bad value (naming it and what is allowed)."""
        if self.running or self._closing:
            raise TrainingBusyError(self._busy(request.guild_id))
        self._starting = True
        try:
            config, progress = await asyncio.to_thread(
                build_run, self.settings, request, self.stations.adapter_in_use, self.overrides
            )
            place = self.place
            pause = place is None or not await asyncio.to_thread(place.has_spare_gpu)
            progress = replace(progress, pauses_songs=pause)
            if pause:
                await self.stations.pause_generation(TRAINING_REASON)
            elif self._gpu_held:  # held for this run, which needs no pause after all
                await self.stations.resume_generation()
            self._gpu_held = False
            try:
                job = await asyncio.to_thread(self._launch, config, progress, request.channel_id)
            except BaseException:
                if pause:
                    await self.stations.resume_generation()
                raise
        finally:
            self._starting = False
        self._job = job
        self.progress = progress
        self.history, self.val_history = [], []
        log.info(
            "guild %d: %s run for %r on dataset %r (pid %d)",
            request.guild_id,
            progress.kind,
            progress.name,
            progress.dataset,
            job.pid,
        )
        self._watcher = asyncio.get_running_loop().create_task(self._watch(job, on_progress))
        return progress

    def _busy(self, guild_id: int) -> str:
        progress = self.progress
        if progress is not None and progress.guild_id == guild_id:
            return (
                f"adapter '{progress.name}' is training now: wait for it or stop it "
                "with /radio_train_stop (one training at a time)"
            )
        return (
            "another server's adapter is training now: the radio trains one adapter "
            "at a time for all its servers; try again later"
        )

    def _launch(self, config: Any, progress: TrainingProgress, channel_id: int | None) -> Any:
        """In a thread: start the trainer, and record the run (see bot.training.record).
        A run on the Ray cluster is not recorded: its trainer is an actor of this bot's
        Ray driver, and Ray ends it when the bot dies."""
        # The trainer gets this bot's engine keys and never reads `.env` (nor the bot's keys).
        env = {**child_environment(self.settings), **(self.env or {})}
        if self.place is not None:
            return self.place.launch(config, env=env)
        from training.launcher import launch_training

        job = launch_training(config, env=env)
        assert progress.key is not None
        record = RunRecord(
            job.pid,
            progress.guild_id,
            channel_id,
            progress.name,
            progress.key,
            progress.dataset,
            str(job.output_dir),
            progress.started_at,
            progress.run_id,
            progress.kind,
        )
        try:
            write_record(self.settings.data_dir, record)
        except OSError:
            job.terminate(10.0)  # a run nobody could find after a crash must not go on
            raise
        return job

    async def release_gpu(self) -> None:
        """Resume generation kept paused for a queued run that then did not start."""
        if self._gpu_held and not self.running and not self._closing:
            self._gpu_held = False
            await self.stations.resume_generation()

    async def stop(self) -> bool:
        """Ask the run to stop cleanly (it saves what it learnt); False when none runs."""
        if not self.running or self._job is None:
            return False
        job = self._job
        if self.progress is not None and self.progress.kind == "preprocess":
            # Preprocessing has no stop file; every file it writes is whole (atomic).
            await asyncio.to_thread(job.process.terminate)
        else:
            await asyncio.to_thread(job.request_stop)
        return True

    async def wait(self) -> TrainingProgress | None:
        """Wait for the current run (if any) to end, export and resume generation."""
        if self._watcher is not None:
            await asyncio.shield(self._watcher)
        return self.progress

    async def close(self, grace: float = 30.0) -> None:
        """Bot shutdown, first of all: stop the trainer (it saves what it learnt; the
        watcher exports it) without starting the music worker again."""
        self._closing = True
        job, watcher = self._job, self._watcher
        if watcher is None or watcher.done():
            return
        await asyncio.to_thread(job.terminate, grace)
        try:
            await asyncio.wait_for(asyncio.shield(watcher), grace + 2 * self.poll_seconds)
        except asyncio.TimeoutError:
            log.error("the training run was not exported in time; the next start exports it")
            watcher.cancel()

    # --- after a crash ------------------------------------------------------------
    async def recover(self) -> TrainingProgress | None:
        """At start-up, before the music worker starts: stop and export a run the
        previous bot lost (see bot.training.record); None when there was none."""
        found = await asyncio.to_thread(self._recover)
        if found is not None:
            self.progress = found[0]
            self.recovered = found
        return found[0] if found is not None else None

    def _recover(self) -> tuple[TrainingProgress, int | None] | None:
        from training.progress import read_events

        data_dir = self.settings.data_dir
        record = read_record(data_dir)
        if record is None:
            prune_run_folders(data_dir)
            return None
        preprocessing = record.kind == "preprocess"
        stop_orphan(record, None if preprocessing else record.folder / "STOP")
        events, _ = read_events(record.folder / "progress.jsonl")
        progress = TrainingProgress(
            record.name,
            record.dataset,
            None,
            guild_id=record.guild_id,
            key=record.key,
            started_at=record.started_at,
            run_id=record.run_id,
            kind=record.kind,
        )
        for event in events:
            progress = apply_event(progress, event)
        adapter_dir = record.folder / "final" / "adapter"
        interrupted = "the bot restarted while it trained"
        if preprocessing:
            progress = replace(
                progress, state="stopped", message="the bot restarted while it preprocessed; what was encoded is kept"
            )
            remove_run_folder(record.folder)
        elif progress.result is not None and adapter_dir.is_dir():
            try:
                key = self._export(adapter_dir, record.key, record.folder)
            except OSError as exc:
                why = f"{interrupted}; cannot export the adapter: {hide_paths(str(exc))}"
                progress = replace(progress, state="failed", message=why)
            else:
                progress = replace(
                    progress,
                    state=progress.result,
                    key=key,
                    adapter=key_name(key),
                    message=f"{interrupted}; what it had learnt by step {progress.step} "
                    f"is saved{renamed_note(record.key, key)}",
                )
        else:
            progress = replace(
                progress,
                state="failed",
                message=f"{interrupted}, and it had saved nothing yet: start it again with /radio_train",
            )
        log.warning(
            "training of adapter %r (guild %d) was interrupted by a restart: %s",
            record.name,
            record.guild_id,
            progress.message,
        )
        clear_record(data_dir)
        prune_run_folders(data_dir)
        return progress, record.channel_id

    # --- the watcher ------------------------------------------------------------
    async def _watch(self, job: Any, on_progress: ProgressCallback | None) -> None:
        async def report(progress: TrainingProgress) -> None:
            self.progress = progress
            if on_progress is not None:
                try:
                    await on_progress(progress)
                except Exception:
                    log.exception("training progress could not be shown")

        progress = self.progress
        assert progress is not None
        try:
            while True:
                # The exit status first: every event written before the exit is read too.
                status, events = await asyncio.to_thread(lambda: (job.poll(), job.events()))
                updated = progress
                for event in events:
                    self._remember(event)
                    updated = apply_event(updated, event)
                if updated != progress:
                    progress = updated
                    await report(progress)
                if status is not None:
                    break
                await asyncio.sleep(self.poll_seconds)  # a timer: the child writes a file
            progress = await self._finish(job, progress, status)
            await asyncio.to_thread(clear_record, self.settings.data_dir)
            await asyncio.to_thread(prune_run_folders, self.settings.data_dir)
        finally:
            # Never start the worker again on the way out, nor between queued runs.
            if progress.pauses_songs and self.hold_gpu():
                self._gpu_held = True
            elif progress.pauses_songs and not self._closing:
                await self.stations.resume_generation()
            log.info("training of %r ended: %s", progress.name, progress.state)
        await report(progress)

    def _remember(self, event: dict[str, Any]) -> None:
        if event.get("event") == "step" and event.get("loss") is not None:
            self.history.append([float(event["step"]), float(event["loss"])])
        elif event.get("event") == "validation" and event.get("val_loss") is not None:
            self.val_history.append([float(event["step"]), float(event["val_loss"])])

    async def _finish(self, job: Any, progress: TrainingProgress, status: int) -> TrainingProgress:
        if progress.state == "failed":
            return progress
        if progress.kind == "preprocess":
            if progress.result is not None:
                return replace(progress, state="done")
            if status < 0:  # stopped with SIGTERM (/radio_train_stop)
                return replace(progress, state="stopped", message="preprocessing stopped; what was encoded is kept")
        if progress.result is None:
            tail = await asyncio.to_thread(console_tail, job.output_dir, self.settings.secrets)
            return replace(progress, state="failed", message=f"the trainer exited with status {status}: {tail}")
        assert progress.key is not None
        try:
            key = await asyncio.to_thread(self._export, job.adapter_dir, progress.key, job.output_dir)
        except OSError as exc:
            why = f"cannot export the adapter: {hide_paths(str(exc))}"
            return replace(progress, state="failed", message=why)
        message = progress.message.removesuffix(EXPORTING) + renamed_note(progress.key, key)
        return replace(progress, state=progress.result, message=message, key=key, adapter=key_name(key))

    def _export(self, source: Path, key: str, run_folder: Path) -> str:
        """In a thread: copy the adapter into ADAPTERS_DIR under `key`, or the next free
        name when a station sings with `key` now; remove the run's folder."""
        key = free_key(self.settings.adapters_dir, key, self.stations.adapter_in_use)
        export_adapter(source, self.settings.adapters_dir / key)
        remove_run_folder(run_folder)
        return key
