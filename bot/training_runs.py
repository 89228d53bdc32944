"""Adapter training launched from the bot: one run at a time, with the GPU to itself.

`TrainingRuns.start` checks the request (dataset folder in DATASETS_DIR,
adapter name, trainer preset, epochs), pauses generation (`StationManager.
pause_generation`: the worker process stops and frees the GPU; stations play
their buffers, then replay their libraries, and say so), and starts the shared
trainer in its own process (`training.jobs.launch_training`) with
preprocessing first (`TrainConfig.preprocess` with the dataset as `audio_dir`).
With a `place` (`training.ray_jobs.RayTrainingPlace`, WORKER_BACKEND=ray) the
run goes to the Ray cluster instead, and generation is paused only when the
cluster has no GPU to spare for it.

A watcher task reads the trainer's progress events on a timer in a thread, so
the event loop never waits on the disk or the child, and hands each change to
the caller's `on_progress`. When the run ends (done, stopped or failed) the
adapter the trainer saved (`final/adapter`, diffusers naming) is copied into
`ADAPTERS_DIR/<name>/`, replacing an older one of that name whole, and
generation resumes. No discord import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from bot.store_checks import check_adapter_name, check_int
from bot.store_errors import InvalidValueError
from engine.settings import Settings

log = logging.getLogger("bot.training_runs")

MAX_EPOCHS = 1000
#: Audio the trainer reads (training.tracks); a dataset needs at least one such file.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif")
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

EXPORTING = "; exporting the adapter"
RunState = Literal["preparing", "training", "exporting", "done", "stopped", "failed"]


class TrainingBusyError(RuntimeError):
    """A run is already going: one GPU, one training at a time."""


class TrainingPlace(Protocol):
    """Somewhere else to train (`training.ray_jobs.RayTrainingPlace`); blocking calls."""

    def has_spare_gpu(self) -> bool: ...

    def launch(self, config: Any, env: dict[str, str] | None = None) -> Any: ...


class GenerationSwitch(Protocol):
    """What a run needs of the stations (`bot.stations.StationManager`)."""

    async def pause_generation(self, reason: str, *, release_gpu: bool = True) -> None: ...

    async def resume_generation(self) -> None: ...


@dataclass(frozen=True)
class TrainingProgress:
    """Where a run stands; `message` says it in words (the end, or why it failed)."""

    name: str
    dataset: str
    preset: str | None
    state: RunState = "preparing"
    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    eta_s: float | None = None
    message: str = "loading the model and preprocessing the dataset"
    adapter: str | None = None  # the name in ADAPTERS_DIR once exported
    pauses_songs: bool = True  # False: it trains on a GPU of its own and the stations sing on
    result: Literal["done", "stopped"] | None = None  # how training ended, before the export
    started_at: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "failed")


ProgressCallback = Callable[[TrainingProgress], Awaitable[None]]


def list_datasets(folder: Path) -> list[str]:
    """The dataset folders under DATASETS_DIR (names only)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _DATASET_NAME.match(p.name))


def list_trainer_presets(settings: Settings) -> dict[str, str]:
    """Shipped and saved trainer presets: name -> description."""
    from training.presets import list_presets

    return list_presets(presets_dir(settings))


def presets_dir(settings: Settings) -> Path:
    return settings.data_dir / "training-presets"  # training.presets.user_presets_dir


def check_dataset(folder: Path, name: Any) -> Path:
    """The dataset folder `name` under `folder`, holding at least one audio file."""
    available = ", ".join(list_datasets(folder)) or f"none yet: add a folder of audio to {folder}"
    if not isinstance(name, str) or not _DATASET_NAME.match(name.strip()):
        raise InvalidValueError("dataset", name, f"a dataset folder in {folder}: {available}")
    path = folder / name.strip()
    if not path.is_dir():
        raise InvalidValueError("dataset", name, f"a dataset folder in {folder}: {available}")
    if not any(p.suffix.lower() in AUDIO_SUFFIXES for p in path.rglob("*") if p.is_file()):
        raise InvalidValueError(
            "dataset", name, f"a folder with audio files ({', '.join(AUDIO_SUFFIXES)})"
        )
    return path


class TrainingRuns:
    """The bot's training runs. `overrides` are `TrainConfig` values that win over
    presets (tests use them for tiny, fast runs); `env` goes to the child."""

    def __init__(
        self,
        stations: GenerationSwitch,
        settings: Settings,
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
        self._job: Any = None
        self._watcher: asyncio.Task[None] | None = None
        self._starting = False

    @property
    def running(self) -> bool:
        return self._starting or (self._watcher is not None and not self._watcher.done())

    async def start(
        self,
        dataset: str,
        name: str,
        *,
        preset: str | None = None,
        epochs: int = 10,
        on_progress: ProgressCallback | None = None,
    ) -> TrainingProgress:
        """Check the request, free the GPU and start training; returns once it runs.

        Raises `TrainingBusyError` while a run is going and `InvalidValueError`
        for a bad value (naming it and what is allowed)."""
        if self.running:
            assert self.progress is not None
            raise TrainingBusyError(
                f"adapter '{self.progress.name}' is training now: wait for it or stop it "
                "with /radio_train_stop (one training at a time)"
            )
        self._starting = True
        try:
            config, progress = await asyncio.to_thread(self._config, dataset, name, preset, epochs)
            place = self.place
            pause = place is None or not await asyncio.to_thread(place.has_spare_gpu)
            progress = replace(progress, pauses_songs=pause)
            if pause:
                await self.stations.pause_generation(f"training adapter '{progress.name}'")
            try:
                job = await asyncio.to_thread(self._launch, config)
            except BaseException:
                if pause:
                    await self.stations.resume_generation()
                raise
        finally:
            self._starting = False
        self._job = job
        self.progress = progress
        log.info("training adapter %r on dataset %r (pid %d)", name, dataset, job.pid)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(job, on_progress))
        return progress

    def _config(
        self, dataset: str, name: str, preset: str | None, epochs: int
    ) -> tuple[Any, TrainingProgress]:
        """In a thread: the checked TrainConfig of a run, and its first progress."""
        from training.config import ConfigError, TrainConfig
        from training.presets import load_preset

        audio = check_dataset(self.settings.datasets_dir, dataset)
        name = check_adapter_name(name.strip() if isinstance(name, str) else name)
        check_int("epochs", epochs, 1, MAX_EPOCHS)
        values: dict[str, Any] = {}
        if preset is not None:
            try:
                values = load_preset(preset.strip(), presets_dir(self.settings))
            except ConfigError as exc:
                names = ", ".join(list_trainer_presets(self.settings))
                raise InvalidValueError("preset", preset, f"one of {names}") from exc
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output = self.settings.data_dir / "training-runs" / f"{name}-{stamp}"
        where = {
            "checkpoint_dir": self.settings.checkpoint_dir,
            "preprocess": True,
            "audio_dir": audio,
            "tensor_output": output / "tensors",
            "output_dir": output,
        }
        config = TrainConfig(**{"device": self.settings.device, **values, **where})
        config = config.replace(epochs=epochs, **self.overrides)
        try:
            config.check("fixed")
        except ConfigError as exc:
            raise InvalidValueError(
                "training settings", preset or "default", "; ".join(exc.lines)
            ) from None
        progress = TrainingProgress(name, audio.name, preset, epochs=epochs)
        return config, progress

    def _launch(self, config: Any) -> Any:
        if self.place is not None:
            return self.place.launch(config, env=self.env)
        from training.jobs import launch_training

        return launch_training(config, env=self.env)

    async def stop(self) -> bool:
        """Ask the run to stop cleanly (it saves what it learnt); False when none runs."""
        if not self.running or self._job is None:
            return False
        await asyncio.to_thread(self._job.request_stop)
        return True

    async def wait(self) -> TrainingProgress | None:
        """Wait for the current run (if any) to end, export and resume generation."""
        if self._watcher is not None:
            await asyncio.shield(self._watcher)
        return self.progress

    async def close(self) -> None:
        """Bot shutdown: stop the child (cleanly if it can) and the watcher."""
        job, watcher = self._job, self._watcher
        if watcher is None or watcher.done():
            return
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await asyncio.to_thread(job.terminate, 30.0)

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
                events, status = await asyncio.to_thread(lambda: (job.events(), job.poll()))
                updated = progress
                for event in events:
                    updated = _apply(updated, event)
                if updated != progress:
                    progress = updated
                    await report(progress)
                if status is not None:
                    break
                await asyncio.sleep(self.poll_seconds)  # a timer: the child writes a file
            progress = await self._finish(job, progress, status, report)
        finally:
            if progress.pauses_songs:
                await self.stations.resume_generation()
            log.info("training of %r ended: %s", progress.name, progress.state)
        await report(progress)

    async def _finish(
        self, job: Any, progress: TrainingProgress, status: int, report: ProgressCallback
    ) -> TrainingProgress:
        if progress.state == "failed":
            return progress
        if progress.result is None:
            tail = await asyncio.to_thread(_console_tail, job.output_dir)
            return replace(progress, state="failed",
                           message=f"the trainer exited with status {status}: {tail}")  # fmt: skip
        try:
            await asyncio.to_thread(
                export_adapter, job.adapter_dir, self.settings.adapters_dir / progress.name
            )
        except OSError as exc:
            return replace(progress, state="failed", message=f"cannot export the adapter: {exc}")
        message = progress.message.removesuffix(EXPORTING)
        return replace(progress, state=progress.result, message=message, adapter=progress.name)


def _apply(progress: TrainingProgress, event: dict[str, Any]) -> TrainingProgress:
    """The progress after one trainer event (training.progress lists them)."""
    kind = event.get("event")
    if kind == "start":
        return replace(progress, state="training", total_steps=event.get("total_steps"),
                       epochs=event.get("epochs", progress.epochs), step=event.get("step", 0),
                       message="training")  # fmt: skip
    if kind == "step":
        return replace(progress, state="training", step=event.get("step", progress.step),
                       total_steps=event.get("total_steps", progress.total_steps),
                       epoch=event.get("epoch", progress.epoch), loss=event.get("loss"),
                       eta_s=event.get("eta_s"), message="training")  # fmt: skip
    if kind in ("done", "stopped"):
        why = f" ({event['reason']})" if event.get("reason") else ""
        ended = "finished" if kind == "done" else "stopped"
        return replace(progress, state="exporting", result=kind, eta_s=None,
                       step=event.get("step", progress.step),
                       epoch=event.get("epoch", progress.epoch),
                       message=f"training {ended}{why}{EXPORTING}")  # fmt: skip
    if kind == "error":
        return replace(progress, state="failed", eta_s=None,
                       message=str(event.get("message", "the trainer failed")))  # fmt: skip
    return progress


def _console_tail(output_dir: Path, chars: int = 300) -> str:
    try:
        text = (output_dir / "console.log").read_text(errors="replace").strip()
    except OSError:
        return "no console output"
    return text[-chars:] or "no console output"


def export_adapter(source: Path, target: Path) -> None:
    """Copy the trained adapter folder to `target`, replacing an older one whole.

    The copy goes to a hidden folder beside `target` first (hidden names are not
    adapters), so the worker never sees half an adapter. Files are copied, not
    `copy2`'d: a fresh modification time tells the worker to load it again."""
    if not source.is_dir():
        raise OSError(f"the trainer saved no adapter in {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(source, partial, copy_function=shutil.copyfile)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)
