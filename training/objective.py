"""The training loss: flow-matching velocity MSE on real frames only.

`masked_mse` averages the squared error over the frames `latent_mask` marks as
real, so padding in a batch of tracks of different lengths neither trains the
model nor dilutes the loss (Side-Step averaged over padded frames). The DiT is
called exactly as `AceStepPipeline.__call__` calls it, with `timestep_r = t`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.devices import Runtime, autocast_context
from training.sampling import TimestepSampler, cfg_dropout, drop_conditions, interpolate


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (prediction - target)^2 over the frames where `mask` [B, T] is 1."""
    weights = mask.to(prediction.dtype)[..., None]
    squared = (prediction.float() - target.float()) ** 2 * weights
    return squared.sum() / (weights.sum() * prediction.shape[-1]).clamp(min=1)


def predict(
    transformer: torch.nn.Module,
    noisy: torch.Tensor,
    t: torch.Tensor,
    conditions: torch.Tensor,
    context: torch.Tensor,
    runtime: Runtime,
) -> torch.Tensor:
    t = t.to(runtime.device)
    with autocast_context(runtime):
        return transformer(
            hidden_states=noisy,
            timestep=t,
            timestep_r=t,
            encoder_hidden_states=conditions,
            context_latents=context,
            return_dict=False,
        )[0]


@dataclass
class Objective:
    """The corrected or vanilla objective; `cfg_ratio` 0 turns dropout off."""

    sampler: TimestepSampler
    cfg_ratio: float
    null_embedding: torch.Tensor  # [1, 1, D], the condition encoder's learned null condition
    runtime: Runtime

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        device = self.runtime.device
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def loss(
        self, transformer: torch.nn.Module, batch: dict[str, torch.Tensor], generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, timesteps) for one micro-batch; draws t, noise and dropout."""
        clean = batch["target_latents"]
        count = clean.shape[0]
        t = self.sampler.sample(count, generator)
        noise = torch.randn(clean.shape, generator=generator)
        dropped = cfg_dropout(count, self.cfg_ratio, generator)
        batch = self.to_device(batch)
        noisy, target = interpolate(batch["target_latents"], noise.to(self.runtime.device), t)
        conditions = drop_conditions(batch["encoder_hidden_states"], dropped, self.null_embedding)
        prediction = predict(transformer, noisy, t, conditions, batch["context_latents"], self.runtime)
        return masked_mse(prediction, target, batch["latent_mask"]), t

    @torch.no_grad()
    def evaluate(self, transformer: torch.nn.Module, loader, *, points: int = 8) -> float:
        """A deterministic loss: every batch at the same `points` timesteps (the
        sampler's quantiles) with noise from a fixed seed and no dropout, so the
        same weights always give the same number."""
        was_training = transformer.training
        transformer.eval()
        generator = torch.Generator().manual_seed(0)
        total, weight = 0.0, 0.0
        try:
            for batch in loader:
                count = batch["target_latents"].shape[0]
                moved = self.to_device(batch)
                frames = float(batch["latent_mask"].sum())
                for t_value in self.sampler.grid(points).tolist():
                    noise = torch.randn(batch["target_latents"].shape, generator=generator)
                    t = torch.full((count,), t_value)
                    noisy, target = interpolate(moved["target_latents"], noise.to(self.runtime.device), t)
                    prediction = predict(
                        transformer,
                        noisy,
                        t,
                        moved["encoder_hidden_states"],
                        moved["context_latents"],
                        self.runtime,
                    )
                    total += float(masked_mse(prediction, target, moved["latent_mask"])) * frames
                    weight += frames
        finally:
            transformer.train(was_training)
        return total / max(weight, 1.0)
