"""One training run's state: model, adapter, data, optimizer, and what it reports.

`TrainingRun` is built by `training.loop.train` and does one optimizer step at
a time (`micro_batch`, `optimizer_step`), plus the end-of-epoch work:
validation, sample clips and checkpoints. With `--preview` the sample clips
come in before/after pairs: each prompt is also sung by the base model alone
(the adapter switched off, same caption, lyrics and seed). The base model
never changes during a run, so its clips are made once, into `samples/base/`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import Position, load_checkpoint, save_checkpoint
from training.config import TrainConfig, TrainingError
from training.data import (
    TrackDataset,
    check_compatible,
    make_loader,
    split_keys,
    warn_if_other_model,
)
from training.metrics import Metrics, grad_norms
from training.model import TrainingModel, move, timestep_parameters
from training.objective import Objective
from training.optim import build_optimizer, build_scheduler, current_lr
from training.progress import ConsoleProgress, Eta, ProgressStream
from training.resume import check_resume, dataset_record
from training.sampling import DiscreteTimesteps, LogitNormal
from training.storage import Manifest
from training.trainable_adapters import AdapterHandle, attach_adapter, layer_of

log = logging.getLogger("training.loop")

StepHook = Callable[[dict[str, Any]], None]


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


class TrainingRun:
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
        self.dataset_record = dataset_record(manifest)
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
            check_resume(config.resume_from, self.saved_configs, manifest)
            self.position = load_checkpoint(
                config.resume_from,
                handle=self.handle,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                generator=self.generator,
            )
            if self.position.batch >= self.batches:  # forced onto a smaller dataset
                self.position.epoch, self.position.batch = self.position.epoch + 1, 0
            log.info("Resumed from %s at step %d", config.resume_from, self.position.step)
        self.console = ConsoleProgress(self.total, self.position.step, plain=plain, log_every=config.log_every)
        self.metrics = Metrics(config.runs_dir)
        self.eta = Eta(self.position.step, self.total)
        self.window_losses: list[float] = []
        self.timesteps: list[torch.Tensor] = []
        self.base_samples: list[Path] | None = None  # --preview: the base model's clips

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

    def sample(self, epoch: int, *, final: bool = False) -> None:
        """Sample clips with the adapter (and, with --preview, by the base model alone)."""
        from training.samples import sample_specs

        specs = sample_specs(self.config, self.dataset.caption(0))
        samples = self.config.output_dir / "samples"
        self.handle.set_training(False)
        try:
            paths = self._render(specs, samples / ("final" if final else f"epoch-{epoch}"))
            fields: dict[str, Any] = {}
            if self.config.preview:
                if self.base_samples is None:
                    with self.handle.disabled():
                        self.base_samples = self._render(specs, samples / "base")
                fields = {"base_paths": self.base_samples, "final": final, "prompts": [spec.caption for spec in specs]}
        finally:
            self.handle.set_training(True)
        self.progress.emit("sample", step=self.position.step, epoch=epoch, paths=paths, **fields)

    def _render(self, specs: list, folder: Path) -> list[Path]:
        from training.samples import render_samples

        return render_samples(
            self.model,
            specs,
            folder,
            steps=self.config.sample_steps,
            offload_encoder=self.config.offload_encoder,
        )

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
            dataset=self.dataset_record,
        )
        self.progress.emit("checkpoint", step=self.position.step, epoch=self.position.epoch, path=folder)
        log.info("Saved checkpoint %s (step %d)", folder, self.position.step)
        return folder

    def close(self) -> None:
        """The run is over: the model is left in eval mode (no adapter dropout)."""
        self.handle.set_training(False)
        self.console.close()
        self.metrics.close()
