"""The training loop: `train(config)` from preprocessed tensors to an adapter.

One optimizer step = `--gradient-accumulation` micro-batches (fewer at the end
of an epoch, each weighted so the step averages its micro-batches). After each
step: progress (console, JSON lines, TensorBoard), and the stop check. After
each epoch: validation, samples and a checkpoint when due. At the end (also
after a stop request): a final checkpoint in `{output-dir}/final/` with the
adapter in diffusers naming (`final/adapter/`, what the engine loads) and in
the naming of other tools (training.export_formats: original ACE-Step PEFT and
ComfyUI for LoRA, original module names for LoKR), the loss-curve PNG, and
with `--preview` a last before/after pair of clips (not after a stop: a stop
means now).

Nothing is written before `training.preflight` has passed: a run that cannot
start leaves no output folder behind.

Exactness of `--resume-from`: the checkpoint holds the adapter weights, the
optimizer, scheduler and grad-scaler state, the global torch RNG (adapter
dropout), the objective's own generator (timesteps, noise, CFG dropout), the
step and the position inside the epoch; the batch order is a function of
(seed, epoch). Training N steps, stopping, and resuming for N more gives the
same weights as 2N steps straight (tests/training/test_train_loop.py checks it).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.config import TrainConfig, TrainingError
from training.export_formats import write_other_exports
from training.metrics import log_file, plot_loss_curve
from training.model import TrainingModel, load_model
from training.preflight import preflight
from training.preprocess_progress import PreprocessProgress
from training.progress import ProgressStream
from training.run import StepHook, TrainingRun
from training.sidestep import training_folder
from training.stop import StopRequest

log = logging.getLogger(__name__)

FINAL = "final"


@dataclass
class TrainResult:
    output_dir: Path
    adapter_dir: Path  # engine-loadable adapter of the last checkpoint
    checkpoint_dir: Path
    step: int
    epoch: int
    stopped: bool
    reason: str | None = None
    loss_curve: Path | None = None
    history: list[list[float]] = field(default_factory=list)
    val_history: list[list[float]] = field(default_factory=list)


def _run_epochs(run: TrainingRun, stop: StopRequest) -> bool:
    """Train until the last epoch, `--max-steps` or a stop request; True if stopped."""
    config, position = run.config, run.position
    accumulation = config.gradient_accumulation
    for epoch in range(position.epoch, config.epochs):
        run.sampler.set_position(epoch, position.batch)
        step_losses: list[float] = []
        halt = False
        for index, batch in enumerate(run.loader, start=position.batch):
            window_start = index - index % accumulation
            window = min(accumulation, run.batches - window_start)
            step_losses.append(run.micro_batch(batch, 1.0 / window))
            if index + 1 - window_start < window:
                continue
            position.batch = index + 1
            run.optimizer_step(sum(step_losses) / len(step_losses), epoch + 1)
            step_losses = []
            halt = stop.requested or position.step >= run.total
            if halt:
                break
        if position.batch < run.batches:  # left in the middle of the epoch
            return stop.requested
        position.epoch, position.batch = epoch + 1, 0
        done = epoch + 1
        if run.val_loader is not None and done % config.val_every == 0:
            run.validate(done)
        last = done == config.epochs or (halt and not stop.requested)
        due = config.sample_every_n_epochs and done % config.sample_every_n_epochs == 0
        if due and not (config.preview and last):  # --preview: the final pair covers it
            run.sample(done)
        if halt or stop.requested:
            return stop.requested
        if config.save_every and done % config.save_every == 0 and done < config.epochs:
            run.checkpoint(config.output_dir / f"checkpoint-epoch-{done}")
    return False


def train(
    config: TrainConfig,
    *,
    plain: bool = False,
    model: TrainingModel | None = None,
    on_step: StepHook | None = None,
) -> TrainResult:
    """Train an adapter as `config` says (preprocessing first with `--preprocess`).

    `model` reuses an already loaded pipeline (it is modified: the adapter is
    attached to its transformer). `on_step` is called after every optimizer
    step with the same fields as the progress stream's `step` event.
    """
    if not config.preprocess and config.dataset_dir is not None:
        # A Side-Step dataset is imported (once) and trained from its import.
        config = config.replace(dataset_dir=training_folder(config.dataset_dir))
    runtime = preflight(config, config.mode)  # type: ignore[arg-type]
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    progress = ProgressStream(config.progress_path)
    try:
        with log_file(config.log_path):
            if model is None:
                model = load_model(config, runtime)
            if config.preprocess:
                from training.preprocess import preprocess

                report = PreprocessProgress(progress, plain=plain)
                try:
                    result = preprocess(config, model=model, report=report)
                finally:
                    report.close()
                if not result.usable:
                    raise TrainingError(f"preprocessing produced no usable track:\n{result.summary()}")
            return _train(config, model, plain, on_step, progress)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            progress.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        progress.close()


def _train(
    config: TrainConfig,
    model: TrainingModel,
    plain: bool,
    hook: StepHook | None,
    progress: ProgressStream,
) -> TrainResult:
    stop = StopRequest(config.stop_path)
    run = None
    try:
        run = TrainingRun(config, model, plain, hook, progress)
        progress.emit(
            "start",
            step=run.position.step,
            total_steps=run.total,
            epochs=config.epochs,
            steps_per_epoch=run.steps_per_epoch,
            adapter_type=config.adapter_type,
            mode=config.mode,
            device=str(model.runtime.device),
            precision=model.runtime.precision_name,
        )
        started = time.monotonic()
        stopped = _run_epochs(run, stop)
        log.info("Trained %d steps in %.1f s", run.position.step, time.monotonic() - started)
        final = run.checkpoint(config.output_dir / FINAL)
        write_other_exports(run.handle, final, run.info)
        curve = plot_loss_curve(run.position.history, run.position.val_history, config.output_dir / "loss_curve.png")
        if config.preview and not stopped:
            run.sample(run.position.epoch, final=True)
        result = TrainResult(
            output_dir=config.output_dir,
            adapter_dir=final / "adapter",
            checkpoint_dir=final,
            step=run.position.step,
            epoch=run.position.epoch,
            stopped=stopped,
            reason=stop.reason,
            loss_curve=curve,
            history=run.position.history,
            val_history=run.position.val_history,
        )
        event = "stopped" if stopped else "done"
        progress.emit(
            event,
            step=result.step,
            epoch=result.epoch,
            adapter=result.adapter_dir,
            reason=stop.reason,
        )
        run.console.message(f"Adapter saved to {result.adapter_dir} ({event}, step {result.step})")
        return result
    finally:
        stop.close()
        if run is not None:
            run.close()
