"""The training loop on tiny models: fp32 adapters under autocast, overfitting,
exact resume, clean stops, optimizers, and everything it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.support.train_helpers import (
    fast_config,
    single_torch_thread,  # noqa: F401 (autouse)
    structured_dataset,
    wide_tiny_checkpoint,
)
from training.config import ConfigError, TrainConfig
from training.devices import resolve_runtime
from training.loop import train
from training.model import load_model
from training.run import make_objective


@pytest.fixture
def config(dataset, tiny_checkpoint_dir: Path, tmp_path: Path) -> TrainConfig:
    return fast_config(tiny_checkpoint_dir, tmp_path, dataset_dir=dataset[1], output_dir=tmp_path / "out")


def adapter_file(output: Path) -> dict[str, torch.Tensor]:
    folder = output / "final" / "adapter"
    return load_file(str(next(folder.glob("*.safetensors"))))


def base_weights(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The transformer's own weights, under their names before peft wrapped them."""
    return {
        name.replace(".base_layer", ""): tensor.detach().clone()
        for name, tensor in transformer.state_dict().items()
        if "lora_" not in name
    }


def test_adapter_weights_stay_fp32_under_bf16_autocast(config: TrainConfig) -> None:
    config = config.replace(precision="bf16", epochs=1, lr=1e-2)
    model = load_model(config, resolve_runtime("cpu", "bf16", "sdpa"))
    before = base_weights(model.transformer)
    train(config, model=model, plain=True)
    adapter = {n: p for n, p in model.transformer.named_parameters() if "lora_" in n}
    assert adapter and all(p.dtype == torch.float32 for p in adapter.values())
    assert all(p.grad is None for p in adapter.values())  # zeroed after the last step
    assert any(float(p.abs().sum()) > 0 for n, p in adapter.items() if "lora_B" in n)
    after = base_weights(model.transformer)
    assert {t.dtype for t in after.values() if t.is_floating_point()} == {torch.bfloat16}
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_overfitting_two_tracks_halves_the_loss_and_leaves_the_base_untouched(
    tmp_path: Path,
) -> None:
    checkpoint = wide_tiny_checkpoint(tmp_path / "wide")
    data = tmp_path / "data"
    data.mkdir()
    structured_dataset(checkpoint, data, ["bright synth arpeggio", "slow dark drone"])
    config = fast_config(
        checkpoint,
        tmp_path,
        dataset_dir=data,
        output_dir=tmp_path / "out",
        rank=16,
        alpha=16.0,
        dropout=0.0,
        lr=5e-3,
        scheduler_type="constant",
        epochs=100,
        log_every=50,
    )
    model = load_model(config, resolve_runtime("cpu", "fp32", "sdpa"))
    reference = base_weights(model.transformer)

    def evaluate() -> float:
        from training.data import TrackDataset, make_loader

        loader, _ = make_loader(TrackDataset(data), config, torch.device("cpu"))
        return make_objective(config, model).evaluate(model.transformer, loader)

    before = evaluate()
    result = train(config, model=model, plain=True)
    after = evaluate()
    assert result.step == 200
    assert after < 0.5 * before, (before, after)
    assert base_weights(model.transformer).keys() == reference.keys()
    assert all(torch.equal(t, reference[n]) for n, t in base_weights(model.transformer).items())


@pytest.mark.parametrize("adapter_type", ["lora", "lokr"])
def test_stopping_and_resuming_gives_the_same_weights_as_training_straight(
    config: TrainConfig, tmp_path: Path, adapter_type: str
) -> None:
    config = config.replace(
        adapter_type=adapter_type,
        lokr_linear_dim=4,
        lokr_linear_alpha=4.0,
        lokr_factor=4,
        dropout=0.1,
        gradient_accumulation=2,
        epochs=3,
        warmup_steps=2,
        lr=1e-3,
        save_every=1,
        log_every=2,
    )
    straight = train(config.replace(output_dir=tmp_path / "straight"), plain=True)
    assert straight.step == 6 and not straight.stopped

    interrupted = config.replace(output_dir=tmp_path / "interrupted")

    def stop_at_three(event: dict) -> None:
        if event["step"] == 3:  # in the middle of epoch 2
            interrupted.stop_path.touch()

    first = train(interrupted, plain=True, on_step=stop_at_three)
    assert (first.step, first.stopped) == (3, True)
    assert first.reason and "stop file" in first.reason
    resumed = train(interrupted.replace(resume_from=first.checkpoint_dir), plain=True)
    assert (resumed.step, resumed.stopped) == (6, False)

    expected = adapter_file(tmp_path / "straight")
    got = adapter_file(tmp_path / "interrupted")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.history == straight.history
    if adapter_type == "lora":
        from_epoch = config.replace(
            output_dir=tmp_path / "from-epoch",
            resume_from=tmp_path / "straight" / "checkpoint-epoch-1",
        )
        train(from_epoch, plain=True)
        again = adapter_file(tmp_path / "from-epoch")
        assert all(torch.equal(expected[k], again[k]) for k in expected)


def test_resume_refuses_other_adapter_settings(config: TrainConfig, tmp_path: Path) -> None:
    done = train(config.replace(epochs=1), plain=True)
    with pytest.raises(ConfigError, match="--rank was 4, now 8"):
        train(config.replace(rank=8, resume_from=done.checkpoint_dir), plain=True)
    with pytest.raises(ConfigError, match="not a training checkpoint"):
        train(config.replace(resume_from=tmp_path), plain=True)


@pytest.mark.parametrize("optimizer", ["adamw8bit", "adafactor", "prodigy"])
def test_each_optimizer_trains_the_adapter(config: TrainConfig, optimizer: str) -> None:
    lr = 1.0 if optimizer == "prodigy" else 1e-2
    result = train(config.replace(optimizer_type=optimizer, lr=lr, epochs=1), plain=True)
    weights = adapter_file(result.output_dir)
    assert any(float(w.abs().sum()) > 0 for k, w in weights.items() if "lora_B" in k)
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_gradient_checkpointing_changes_memory_not_results(config: TrainConfig, tmp_path) -> None:
    plain = train(config.replace(output_dir=tmp_path / "a", dropout=0.0), plain=True)
    checkpointed = train(
        config.replace(output_dir=tmp_path / "b", dropout=0.0, gradient_checkpointing=True),
        plain=True,
    )
    losses = [loss for _, loss in plain.history]
    assert [loss for _, loss in checkpointed.history] == pytest.approx(losses, rel=1e-5)
    a, b = adapter_file(tmp_path / "a"), adapter_file(tmp_path / "b")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_modes_pick_their_objective(config: TrainConfig) -> None:
    from training.sampling import DiscreteTimesteps, LogitNormal

    model = load_model(config, resolve_runtime("cpu", "fp32", "sdpa"))
    fixed = make_objective(config, model)
    assert (fixed.sampler, fixed.cfg_ratio) == (LogitNormal(-0.4, 1.0), 0.15)
    null = model.pipe.condition_encoder.null_condition_emb
    assert torch.equal(fixed.null_embedding, null.detach().float())
    vanilla = make_objective(config.replace(mode="vanilla"), model)
    assert (vanilla.sampler, vanilla.cfg_ratio) == (DiscreteTimesteps(), 0.0)


def test_reports_progress_tensorboard_log_curve_validation_and_samples(
    config: TrainConfig, tmp_path: Path, env_file: Path
) -> None:
    import soundfile as sf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"caption": "lofi piano", "bpm": 80, "seed": 3}]))
    config = config.replace(
        epochs=2,
        val_split=0.25,
        log_heavy_every=1,
        sample_every_n_epochs=2,
        sample_prompts=prompts,
        sample_steps=2,
    )
    result = train(config, plain=True)
    out = config.output_dir

    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, result.step + 1)) and result.step == 6
    assert {"step", "epoch", "loss", "lr", "eta_s", "total_steps"} <= steps[-1].keys()
    validations = [e for e in events if e["event"] == "validation"]
    assert len(validations) == 2 and all(e["val_loss"] > 0 for e in validations)
    (sample,) = [e for e in events if e["event"] == "sample"]
    clip = Path(sample["paths"][0])
    assert clip.parent == out / "samples" / "epoch-2"
    audio, rate = sf.read(clip)
    assert rate == 48000 and len(audio) == 10 * 48000

    board = EventAccumulator(str(out / "runs"))
    board.Reload()
    scalars = set(board.Tags()["scalars"])
    assert {"loss/train", "lr", "loss/val", "grad_norm/total", "grad_norm/layers.0"} <= scalars
    assert len(board.Scalars("loss/train")) == 6
    assert "timesteps" in board.Tags()["histograms"]

    assert "Training on 3 tracks, validating on 1" in (out / "train.log").read_text()
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result.val_history) == 2


def test_validation_loss_is_deterministic(config: TrainConfig, dataset) -> None:
    from training.data import TrackDataset, make_loader

    model = load_model(config, resolve_runtime("cpu", "fp32", "sdpa"))
    loader, _ = make_loader(TrackDataset(dataset[1]), config, torch.device("cpu"), shuffle=False)
    objective = make_objective(config, model)
    first = objective.evaluate(model.transformer, loader)
    torch.manual_seed(123)  # the global RNG does not matter
    assert objective.evaluate(model.transformer, loader) == first
