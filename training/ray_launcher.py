"""Training on a Ray cluster: the trainer on a GPU of its own, the others keep singing.

`RayTrainingPlace` is where the bot's training runs go with `WORKER_BACKEND=
ray` (`bot.training.runs.TrainingRuns(place=...)`):

- `has_spare_gpu()`: the cluster has `RAY_TRAINING_GPUS` of a GPU free now,
  besides the song workers. Then the run starts without pausing song-making;
  otherwise (a single GPU) the bot pauses generation first, which removes the
  song workers and frees their GPU, as with the local worker.
- `launch(config)`: packs the dataset folder (`engine.worker.cluster.blobs`), puts it
  in the object store and starts a `TrainerActor` that asks Ray for that GPU.
  The actor unpacks the dataset on its own machine and runs the shared trainer
  there as a child process (`training.launcher.launch_training`), exactly as the
  bot does locally. It returns a `RayTrainingJob`, which the bot watches like
  a local `training.launcher.TrainingJob`: `events()`, `poll()`, `request_stop()`,
  `terminate()`. When the run ends, `poll()` brings the saved adapter and the
  console log back through the object store into the run's local output
  folder, so `adapter_dir` is a folder on the bot's machine as before.

The trainer's machine needs the checkpoint at the bot's `CHECKPOINT_DIR` path
(as every song worker does); nothing else is shared.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray

from engine.worker.cluster.blobs import pack_folder, unpack_folder
from training.config import TrainConfig
from training.launcher import CONSOLE_FILE, TrainingJob, launch_training

log = logging.getLogger("training.ray_launcher")

#: Seconds a training actor may wait for its GPU before the launch fails.
PLACE_TIMEOUT = 600.0


class TrainerActor:
    """One training run on a cluster machine (a Ray actor); see the module docstring."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="radio-training-"))
        self.job: TrainingJob | None = None

    def start(self, config: dict[str, Any], dataset: bytes, env: dict[str, str] | None) -> int:
        """Unpack the dataset here, point the run's folders here, start the trainer."""
        audio = unpack_folder(dataset, self.scratch / "dataset")
        run = self.scratch / "run"
        local = TrainConfig.from_dict(config).replace(audio_dir=audio, output_dir=run, tensor_output=run / "tensors")
        self.job = launch_training(local, env=env)
        return self.job.pid

    def events(self) -> list[dict[str, Any]]:
        return self._job.events()

    def poll(self) -> int | None:
        return self._job.poll()

    def request_stop(self) -> None:
        self._job.request_stop()

    def terminate(self, grace: float) -> int:
        return self._job.terminate(grace)

    def results(self) -> tuple[bytes | None, str]:
        """The packed adapter the run saved (None if it saved none) and its console log."""
        job = self._job
        adapter = pack_folder(job.adapter_dir).data if job.adapter_dir.is_dir() else None
        console = job.output_dir / CONSOLE_FILE
        text = console.read_text(errors="replace") if console.is_file() else ""
        shutil.rmtree(self.scratch, ignore_errors=True)
        return adapter, text

    @property
    def _job(self) -> TrainingJob:
        if self.job is None:
            raise RuntimeError("start() the run first")
        return self.job


class RayTrainingJob:
    """The bot's handle on a `TrainerActor` (the interface of `TrainingJob`); blocking
    calls, which the bot makes in threads."""

    def __init__(self, actor: Any, config: TrainConfig, pid: int):
        self.actor = actor
        self.config = config  # the bot's view: output_dir is a folder on the bot's machine
        self.pid = pid
        self._status: int | None = None
        self._last_events: list[dict[str, Any]] = []  # read before the actor was let go

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / "final" / "adapter"

    def events(self) -> list[dict[str, Any]]:
        """New progress events; after the end, those the actor wrote last (read before
        it was let go), so a caller may poll first and read events after."""
        if self._status is not None:
            last, self._last_events = self._last_events, []
            return last
        return ray.get(self.actor.events.remote())

    def poll(self) -> int | None:
        """The exit status once the run ended (its adapter is then here), else None."""
        if self._status is None:
            status = ray.get(self.actor.poll.remote())
            if status is not None:
                self._bring_back()
                self._status = status
        return self._status

    def request_stop(self) -> None:
        ray.get(self.actor.request_stop.remote())

    def terminate(self, grace: float = 120.0) -> int:
        if self._status is None:
            self._status = ray.get(self.actor.terminate.remote(grace))
            self._bring_back()
        return self._status

    def _bring_back(self) -> None:
        adapter, console = ray.get(self.actor.results.remote())
        self._last_events = ray.get(self.actor.events.remote())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / CONSOLE_FILE).write_text(console)
        if adapter is not None:
            unpack_folder(adapter, self.adapter_dir)
        ray.kill(self.actor)


class RayTrainingPlace:
    """Training runs on the Ray cluster; see the module docstring."""

    def __init__(self, gpus: float = 1.0, cpus: float = 1.0):
        self.gpus = gpus
        self.cpus = cpus

    def has_spare_gpu(self) -> bool:
        """Blocking: `gpus` of a GPU are free now, besides what the song workers hold."""
        free = ray.available_resources().get("GPU", 0.0)
        return free >= self.gpus

    def launch(self, config: TrainConfig, env: dict[str, str] | None = None) -> RayTrainingJob:
        """Blocking: start the run on the cluster (see the module docstring)."""
        config.check(config.mode)  # type: ignore[arg-type]
        if config.audio_dir is None:
            raise ValueError("a Ray training run needs audio_dir: the dataset to send")
        dataset = ray.put(pack_folder(Path(config.audio_dir)).data)
        actor = ray.remote(TrainerActor).options(num_gpus=self.gpus, num_cpus=self.cpus, max_restarts=0).remote()
        try:
            pid = ray.get(actor.start.remote(config.to_dict(), dataset, env), timeout=PLACE_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor)
            raise OSError(
                f"the Ray cluster had no {self.gpus:g} GPU free for training within "
                f"{PLACE_TIMEOUT:g} s (RAY_TRAINING_GPUS)"
            ) from None
        log.info("training runs on the Ray cluster (trainer pid %d)", pid)
        return RayTrainingJob(actor, config, pid)
