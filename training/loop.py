"""The training loop: `train(config)` from preprocessed tensors to an adapter.

One optimizer step = `--gradient-accumulation` micro-batches (fewer at the end
of an epoch, each weighted so the step averages its micro-batches). After each
step: progress (console, JSON lines, TensorBoard), and the stop check. After
each epoch: validation, samples and a checkpoint when due. At the end (also
after a stop request): a final checkpoint in `{output-dir}/final/` with the
adapter in diffusers naming (`final/adapter/`, what the engine loads) and in
the original ACE-Step PEFT naming (`final/adapter_peft/`, LoRA), and the
loss-curve PNG.

Exactness of `--resume-from`: the checkpoint holds the adapter weights, the
optimizer, scheduler and grad-scaler state, the global torch RNG (adapter
dropout), the objective's own generator (timesteps, noise, CFG dropout), the
step and the position inside the epoch; the batch order is a function of
(seed, epoch). Training N steps, stopping, and resuming for N more gives the
same weights as 2N steps straight (tests/test_train_loop.py checks it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.adapters import AdapterHandle, attach_adapter, layer_of
from training.checkpoint import (
    Position,
    check_resumable,
    load_checkpoint,
    save_checkpoint,
)
from training.config import TrainConfig, TrainingError
from training.data import (
    TrackDataset,
    check_compatible,
    make_loader,
    split_keys,
    warn_if_other_model,
)
from training.devices import resolve_runtime
from training.export import write_peft_export
from training.metrics import Metrics, grad_norms, log_file, plot_loss_curve
from training.model import TrainingModel, load_model, move, timestep_parameters
from training.objective import Objective
from training.optim import build_optimizer, build_scheduler, current_lr
from training.progress import ConsoleProgress, Eta, ProgressStream
from training.sampling import DiscreteTimesteps, LogitNormal
from training.sidestep import training_folder
from training.stop import StopRequest
from training.storage import Manifest

log = logging.getLogger(__name__)

FINAL = "final"
StepHook = Callable[[dict[str, Any]], None]


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


def make_objective(config: TrainConfig, model: TrainingModel) -> Objective:
    if config.mode == "vanilla":
        sampler, ratio = DiscreteTimesteps(), 0.0
    else:
        mu, sigma = timestep_parameters(config, model)
        sampler, ratio = LogitNormal(mu, sigma), config.cfg_ratio
    null = model.pipe.condition_encoder.null_condition_emb.detach().float()
    return Objective(sampler, ratio, null.to(model.runtime.device), model.runtime)


def prepare_transformer(config: TrainConfig, model: TrainingModel) -> AdapterHandle:
    """Seeded adapter on the device, checkpointing as asked, encoders placed."""
    pipe, device = model.pipe, model.runtime.device
    pipe.transformer.to(device)
    torch.manual_seed(config.seed)
    handle = attach_adapter(pipe.transformer, config)
    if config.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    encoders = [pipe.vae, pipe.text_encoder, pipe.condition_encoder]
    move(encoders, torch.device("cpu") if config.offload_encoder else device)
    handle.set_training(True)
    return handle


class _Run:
    """State and helpers of one `train` call."""

    def __init__(
        self,
        config: TrainConfig,
        model: TrainingModel,
        plain: bool,
        hook: StepHook | None,
        progress: ProgressStream,
    ):
        self.config = config
        self.progress = progress
        self.model = model
        self.hook = hook
        self.device = model.runtime.device
        folder = config.training_data_dir
        manifest = Manifest.load(folder)
        check_compatible(manifest, model.transformer)
        warn_if_other_model(manifest, model)
        train_keys, val_keys = split_keys(sorted(manifest.samples), config.val_split, config.seed)
        if not train_keys:
            raise TrainingError(f"{folder} holds no tracks to train on: preprocess audio first")
        self.dataset = TrackDataset(folder, train_keys)
        self.loader, self.sampler = make_loader(self.dataset, config, self.device)
        self.val_loader = None
        if val_keys:
            self.val_loader, _ = make_loader(
                TrackDataset(folder, val_keys),
                config.replace(num_workers=0),
                self.device,
                shuffle=False,
            )
        log.info("Training on %d tracks, validating on %d", len(train_keys), len(val_keys))
        self.handle = prepare_transformer(config, model)
        self.objective = make_objective(config, model)
        self.parameters = self.handle.parameters()
        self.named = self.handle.named_parameters()
        self.batches = self.sampler.batches_per_epoch
        self.steps_per_epoch = math.ceil(self.batches / config.gradient_accumulation)
        self.total = min(config.max_steps or math.inf, config.epochs * self.steps_per_epoch)
        self.optimizer = build_optimizer(config, self.parameters, self.device)
        self.scheduler = build_scheduler(config, self.optimizer, self.total)
        fp16_cuda = model.runtime.dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16_cuda)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.position = Position()
        self.info = {
            "mode": config.mode,
            "base_model": model.info.describe(),
            "base_model_name": model.info.name,
            "variant": config.base_model or model.info.variant,
            "dropout": config.dropout,
        }
        self.saved_configs = config.to_dict()
        if config.resume_from is not None:
            check_resumable(config.resume_from, self.saved_configs)
            self.position = load_checkpoint(
                config.resume_from,
                handle=self.handle,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                generator=self.generator,
            )
            log.info("Resumed from %s at step %d", config.resume_from, self.position.step)
        self.console = ConsoleProgress(
            self.total, self.position.step, plain=plain, log_every=config.log_every
        )
        self.metrics = Metrics(config.runs_dir)
        self.eta = Eta(self.position.step, self.total)
        self.window_losses: list[float] = []
        self.timesteps: list[torch.Tensor] = []

    # --- one optimizer step --------------------------------------------------
    def micro_batch(self, batch: dict[str, torch.Tensor], weight: float) -> float:
        loss, t = self.objective.loss(self.model.transformer, batch, self.generator)
        self.scaler.scale(loss * weight).backward()
        if self.config.log_heavy_every:
            self.timesteps.append(t)
        return float(loss.detach())

    def optimizer_step(self, loss: float, epoch: int) -> None:
        config = self.config
        self.scaler.unscale_(self.optimizer)
        step = self.position.step + 1
        heavy = config.log_heavy_every > 0 and step % config.log_heavy_every == 0
        if heavy:
            for name, value in grad_norms(self.named, layer_of).items():
                self.metrics.scalar(f"grad_norm/{name}", value, step)
            self.metrics.histogram("timesteps", torch.cat(self.timesteps), step)
            self.timesteps.clear()
        clip = config.max_grad_norm if config.max_grad_norm > 0 else math.inf
        total_norm = float(torch.nn.utils.clip_grad_norm_(self.parameters, clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = current_lr(self.optimizer)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.position.step = step
        self.position.history.append([float(step), loss])
        self.window_losses.append(loss)
        if step % config.log_every == 0 or step == self.total:
            mean = sum(self.window_losses) / len(self.window_losses)
            self.metrics.scalar("loss/train", mean, step)
            self.metrics.scalar("lr", lr, step)
            if not heavy:
                self.metrics.scalar("grad_norm/total", total_norm, step)
            self.window_losses.clear()
        elapsed, rate, eta = self.eta.update(step)
        event = {
            "step": step,
            "total_steps": self.total,
            "epoch": epoch,
            "loss": round(loss, 6),
            "lr": lr,
            "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": round(elapsed, 1),
            "steps_per_s": round(rate, 4),
        }
        self.progress.emit("step", **event)
        self.console.update(step, epoch, loss, lr, eta)
        if self.hook is not None:
            self.hook(event)

    # --- end of epoch ----------------------------------------------------------
    def validate(self, epoch: int) -> None:
        assert self.val_loader is not None
        value = self.objective.evaluate(self.model.transformer, self.val_loader)
        self.handle.set_training(True)
        step = self.position.step
        self.position.val_history.append([float(step), value])
        self.metrics.scalar("loss/val", value, step)
        self.progress.emit("validation", step=step, epoch=epoch, val_loss=round(value, 6))
        self.console.message(f"epoch {epoch}: validation loss {value:.4f}")

    def sample(self, epoch: int) -> None:
        from training.samples import render_samples, sample_specs

        specs = sample_specs(self.config, self.dataset.caption(0))
        folder = self.config.output_dir / "samples" / f"epoch-{epoch}"
        paths = render_samples(
            self.model,
            specs,
            folder,
            steps=self.config.sample_steps,
            offload_encoder=self.config.offload_encoder,
        )
        self.handle.set_training(True)
        self.progress.emit("sample", step=self.position.step, epoch=epoch, paths=paths)

    def checkpoint(self, folder: Path) -> Path:
        save_checkpoint(
            folder,
            handle=self.handle,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            generator=self.generator,
            position=self.position,
            config=self.saved_configs,
            info=self.info,
        )
        self.progress.emit(
            "checkpoint", step=self.position.step, epoch=self.position.epoch, path=folder
        )
        log.info("Saved checkpoint %s (step %d)", folder, self.position.step)
        return folder

    def close(self) -> None:
        self.console.close()
        self.metrics.close()


def _run_epochs(run: _Run, stop: StopRequest) -> bool:
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
        if config.sample_every_n_epochs and done % config.sample_every_n_epochs == 0:
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
    config.check(config.mode)
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    progress = ProgressStream(config.progress_path)
    try:
        with log_file(config.log_path):
            if not config.preprocess:  # a Side-Step dataset is imported (once) first
                config = config.replace(dataset_dir=training_folder(config.dataset_dir))
                Manifest.load(config.training_data_dir)  # fail before the slow model load
            if model is None:
                runtime = resolve_runtime(config.device, config.precision, config.attention_backend)
                model = load_model(config, runtime)
            if config.preprocess:
                from training.preprocess import preprocess

                result = preprocess(config, model=model)
                if not result.usable:
                    raise TrainingError(
                        f"preprocessing produced no usable track:\n{result.summary()}"
                    )
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
        run = _Run(config, model, plain, hook, progress)
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
        if run.handle.kind == "lora":
            write_peft_export(run.handle, final / "adapter_peft", run.info)
        curve = plot_loss_curve(
            run.position.history, run.position.val_history, config.output_dir / "loss_curve.png"
        )
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
