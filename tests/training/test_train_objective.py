"""The objective's parts: timestep samplers, CFG dropout, masked loss, batching,
data order and the model config's timestep parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.support.train_helpers import single_torch_thread  # noqa: F401 (autouse)
from training.data import EpochBatchSampler, collate, split_keys
from training.objective import masked_mse
from training.sampling import (
    TURBO_TIMESTEPS,
    DiscreteTimesteps,
    LogitNormal,
    cfg_dropout,
    drop_conditions,
)

COUNT = 200_000


@pytest.mark.parametrize(("mu", "sigma"), [(-0.4, 1.0), (0.7, 0.5)])
def test_logit_normal_timesteps_have_the_configured_mean_and_std(mu: float, sigma: float) -> None:
    t = LogitNormal(mu, sigma).sample(COUNT, torch.Generator().manual_seed(0))
    assert float(t.min()) > 0 and float(t.max()) < 1
    logits = torch.logit(t.double())
    assert float(logits.mean()) == pytest.approx(mu, abs=0.01)
    assert float(logits.std()) == pytest.approx(sigma, abs=0.01)
    grid = LogitNormal(mu, sigma).grid(8)
    assert torch.logit(grid.double()).mean() == pytest.approx(mu, abs=1e-6)  # symmetric quantiles


def test_vanilla_timesteps_are_the_turbo_schedule_uniformly() -> None:
    t = DiscreteTimesteps().sample(COUNT, torch.Generator().manual_seed(1))
    values, counts = torch.unique(t, return_counts=True)
    assert sorted(values.tolist()) == pytest.approx(sorted(TURBO_TIMESTEPS))
    assert (counts / COUNT - 1 / 8).abs().max() < 0.005


def test_cfg_dropout_rate_and_null_embedding() -> None:
    dropped = cfg_dropout(COUNT, 0.15, torch.Generator().manual_seed(2))
    assert float(dropped.float().mean()) == pytest.approx(0.15, abs=0.003)
    assert not cfg_dropout(1000, 0.0, torch.Generator().manual_seed(2)).any()
    states = torch.randn(3, 5, 4)
    null = torch.randn(1, 1, 4)
    out = drop_conditions(states, torch.tensor([False, True, False]), null)
    assert torch.equal(out[0], states[0]) and torch.equal(out[2], states[2])
    assert torch.equal(out[1], null[0].expand(5, 4))


def _track(frames: int, tokens: int, value: float) -> dict[str, torch.Tensor]:
    return {
        "target_latents": torch.full((frames, 64), value),
        "context_latents": torch.full((frames, 128), value),
        "encoder_hidden_states": torch.full((tokens, 8), value),
        "encoder_attention_mask": torch.ones(tokens, dtype=torch.int8),
    }


def test_collate_pads_and_masks_real_frames_and_tokens() -> None:
    batch = collate([_track(5, 3, 1.0), _track(2, 6, 2.0)])
    assert batch["target_latents"].shape == (2, 5, 64)
    assert batch["latent_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["encoder_attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert float(batch["target_latents"][1, 2:].abs().sum()) == 0


def test_masked_loss_ignores_padding() -> None:
    batch = collate([_track(6, 2, 0.0), _track(3, 2, 0.0)])
    mask = batch["latent_mask"]
    prediction = torch.randn(2, 6, 64, requires_grad=True)
    target = torch.randn(2, 6, 64)
    loss = masked_mse(prediction, target, mask)
    real = torch.cat([(prediction - target)[0], (prediction - target)[1, :3]])
    assert float(loss) == pytest.approx(float(real.pow(2).mean()), rel=1e-6)
    garbage = prediction.detach().clone()
    garbage[1, 3:] = 1e6  # whatever the model says on padding
    assert float(masked_mse(garbage, target, mask)) == pytest.approx(float(loss), rel=1e-6)
    loss.backward()
    assert float(prediction.grad[1, 3:].abs().sum()) == 0
    assert float(prediction.grad[1, :3].abs().sum()) > 0


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    sampler = EpochBatchSampler(10, 3, seed=5)
    first = sampler.batches(0)
    assert sorted(i for b in first for i in b) == list(range(10))
    assert [len(b) for b in first] == [3, 3, 3, 1]
    assert EpochBatchSampler(10, 3, seed=5).batches(0) == first
    assert sampler.batches(1) != first
    assert EpochBatchSampler(10, 3, seed=6).batches(0) != first
    sampler.set_position(0, 2)
    assert list(sampler) == first[2:] and len(sampler) == 2


def test_validation_split_is_stable_as_tracks_are_added() -> None:
    keys = [f"song{i}.wav" for i in range(20)]
    train, held = split_keys(keys, 0.2, seed=1)
    assert len(held) == 4 and not set(train) & set(held) and sorted(train + held) == sorted(keys)
    _, held_more = split_keys([*keys, "new.wav"], 0.2, seed=1)
    assert len(set(held) & set(held_more)) >= len(held) - 1  # a new track displaces at most one
    assert split_keys(keys[:1], 0.5, seed=1) == (keys[:1], [])
    assert split_keys(keys, 0.0, seed=1) == (sorted(keys), [])


def test_timestep_parameters_come_from_the_model_config(tmp_path: Path) -> None:
    from engine.checkpoint.find import CheckpointInfo
    from engine.checkpoint.tiny import build_tiny_pipeline
    from training.config import TrainConfig
    from training.devices import resolve_runtime
    from training.model import TrainingModel, timestep_parameters

    dit = tmp_path / "acestep-v15-base"
    dit.mkdir()
    (dit / "config.json").write_text(json.dumps({"timestep_mu": 0.25, "timestep_sigma": 0.8}))
    runtime = resolve_runtime("cpu", "fp32", "sdpa")
    pipe = build_tiny_pipeline("base")
    original = TrainingModel(pipe, CheckpointInfo(tmp_path, "original", dit.name, "base", False), runtime)
    assert timestep_parameters(TrainConfig(), original) == (0.25, 0.8)
    assert timestep_parameters(TrainConfig(timestep_mu=-1.0), original) == (-1.0, 0.8)
    diffusers = TrainingModel(pipe, CheckpointInfo(tmp_path, "diffusers", "x", "base", False), runtime)
    assert timestep_parameters(TrainConfig(), diffusers) == (-0.4, 1.0)
