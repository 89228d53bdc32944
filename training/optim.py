"""Optimizers and learning-rate schedules (seeds/000 and 003).

- `adamw`: torch AdamW (fused on CUDA).
- `adamw8bit`: bitsandbytes AdamW8bit, optimizer state in 8 bits (~30% less
  optimizer memory); runs on the CPU as well.
- `adafactor`: transformers' Adafactor with `scale_parameter=False,
  relative_step=False`, so `--lr` is the step size.
- `prodigy`: prodigyopt's Prodigy, which estimates the step size itself:
  use `--lr 1.0`; its schedule is always constant.

Schedules: `constant`, or a warmup from 10% to 100% of `--lr` over
`--warmup-steps` optimizer steps followed by `cosine` (to 0), `linear` (to 0)
or `constant_with_warmup`.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from training.config import TrainConfig

log = logging.getLogger(__name__)

WARMUP_START = 0.1


def build_optimizer(
    config: TrainConfig, parameters: list[torch.nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    kind = config.optimizer_type
    if kind == "adamw8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if kind == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(
            parameters,
            lr=config.lr,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
            weight_decay=config.weight_decay,
        )
    if kind == "prodigy":
        from prodigyopt import Prodigy

        if config.lr < 0.1:
            log.warning("Prodigy expects --lr 1.0 (it scales the step itself); got %g", config.lr)
        return Prodigy(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=device.type == "cuda")


def lr_factor(step: int, *, kind: str, warmup: int, total: int) -> float:
    """Multiplier of `--lr` for optimizer step `step` (0-based)."""
    if kind == "constant":
        return 1.0
    if step < warmup:
        return WARMUP_START + (1.0 - WARMUP_START) * step / warmup
    if kind == "constant_with_warmup":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total: int) -> LambdaLR:
    kind = config.effective_scheduler
    if kind != config.scheduler_type:
        log.info("Prodigy sets its own step size: using a constant schedule")
    warmup = config.warmup_steps
    return LambdaLR(optimizer, lambda step: lr_factor(step, kind=kind, warmup=warmup, total=total))


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The step size in effect (Prodigy's is lr x its estimate d)."""
    group = optimizer.param_groups[0]
    return float(group["lr"]) * float(group.get("d", 1.0))
