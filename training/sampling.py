"""Timesteps, noise and CFG dropout: the random parts of the objective.

Flow matching as ACE-Step 1.5 was trained: x0 = clean latents, x1 = noise,
`xt = t * x1 + (1 - t) * x0`, and the DiT predicts the velocity `x1 - x0`.

- Corrected (`fixed`) mode: `t = sigmoid(N(mu, sigma))`, logit-normal with the
  model's `timestep_mu` / `timestep_sigma` (-0.4 / 1.0), no shift (shift is an
  inference-time warp); with probability `cfg_ratio` a sample's whole condition
  is replaced by the learned `null_condition_emb`.
- Vanilla mode (the original trainer): `t` uniform over the turbo schedule's
  eight values, no dropout.

All draws come from one `torch.Generator` on the CPU that the checkpoint saves,
so results do not depend on the device and resume exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch

#: The turbo model's 8-step schedule (shift 3), as the original trainer samples it.
TURBO_TIMESTEPS = (1.0, 0.9545, 0.9, 0.8333, 0.75, 0.6429, 0.5, 0.3)


@dataclass(frozen=True)
class LogitNormal:
    mu: float = -0.4
    sigma: float = 1.0

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.sigmoid(torch.randn(count, generator=generator) * self.sigma + self.mu)

    def grid(self, count: int) -> torch.Tensor:
        """`count` equal-probability points (quantile midpoints), for a
        deterministic validation loss that weights t as training does."""
        normal = NormalDist(self.mu, self.sigma)
        logits = [normal.inv_cdf((i + 0.5) / count) for i in range(count)]
        return torch.tensor([1 / (1 + math.exp(-x)) for x in logits])


@dataclass(frozen=True)
class DiscreteTimesteps:
    values: tuple[float, ...] = TURBO_TIMESTEPS

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(len(self.values), (count,), generator=generator)
        return torch.tensor(self.values)[index]

    def grid(self, count: int) -> torch.Tensor:
        return torch.tensor(self.values)


TimestepSampler = LogitNormal | DiscreteTimesteps


def cfg_dropout(count: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Which samples lose their condition (True), each with probability `ratio`.
    Always draws, so the random stream does not depend on the ratio."""
    return torch.rand(count, generator=generator) < ratio


def drop_conditions(states: torch.Tensor, dropped: torch.Tensor, null_embedding: torch.Tensor) -> torch.Tensor:
    """Replace the whole condition of each dropped sample by the learned null
    embedding broadcast to its shape (not zeros: that is what inference uses)."""
    null = null_embedding.to(device=states.device, dtype=states.dtype).expand_as(states)
    return torch.where(dropped.to(states.device)[:, None, None], null, states)


def interpolate(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(xt, velocity target) for timesteps `t` of shape [batch]."""
    t = t.to(clean.device, clean.dtype)[:, None, None]
    return t * noise + (1 - t) * clean, noise - clean
