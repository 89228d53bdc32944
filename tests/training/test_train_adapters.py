"""Trained adapters load into the engine and play as they trained: LoRA in both
namings and LoKR, round trip through `MusicEngine.load_adapter`; and the whole
way from a folder of audio through `train.py` to a changed song."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.settings import PROJECT_ROOT, load_settings
from engine.spec import SongSpec
from tests.support.train_helpers import (
    CHILD_ENV,
    fast_config,
    make_audio_dir,
    single_torch_thread,  # noqa: F401 (autouse)
)
from training.devices import resolve_runtime
from training.loop import train
from training.model import load_model

SPEC = SongSpec(title="T", caption="bright synth arpeggio", bpm=120, key="A minor", duration=10, seed=7)


def make_engine(tmp_path: Path):
    from engine.checkpoint.tiny import build_tiny_pipeline
    from engine.gpu.tiers import DeviceInfo, resolve
    from engine.music_engine import MusicEngine

    settings = load_settings(tracks_dir=tmp_path / "tracks")
    cpu = DeviceInfo("cpu", None, "CPU", None, None, None, False)
    # The same weights as the tiny checkpoint the adapters were trained on.
    return MusicEngine(settings, policy=resolve(settings, cpu), pipeline=build_tiny_pipeline())


def dit_output(transformer: torch.nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    frames = 20
    with torch.no_grad():
        return transformer.eval()(
            hidden_states=torch.randn(1, frames, 64, generator=generator),
            timestep=torch.tensor([0.6]),
            timestep_r=torch.tensor([0.6]),
            encoder_hidden_states=torch.randn(1, 12, 64, generator=generator),
            context_latents=torch.randn(1, frames, 128, generator=generator),
            return_dict=False,
        )[0]


def song(engine, tmp_path: Path, name: str) -> np.ndarray:
    track = engine.generate(SPEC, out_path=tmp_path / f"{name}.wav", fmt="wav")[0]
    return sf.read(track.path, dtype="float32")[0]


@pytest.mark.parametrize(
    "settings",
    [
        {"adapter_type": "lora"},
        {"adapter_type": "lokr", "lokr_linear_dim": 4, "lokr_linear_alpha": 8.0, "lokr_factor": 4},
        {
            "adapter_type": "lokr",
            "lokr_linear_dim": 4,
            "lokr_linear_alpha": 8.0,
            "lokr_factor": 4,
            "lokr_use_tucker": True,
            "lokr_weight_decompose": True,
        },
    ],
    ids=["lora", "lokr", "lokr-tucker-dora"],
)
def test_adapters_round_trip_through_the_engine(
    settings: dict, dataset, tiny_checkpoint_dir: Path, tmp_path: Path, env_file: Path
) -> None:
    config = fast_config(
        tiny_checkpoint_dir,
        tmp_path,
        dataset_dir=dataset[1],
        output_dir=tmp_path / "out",
        lr=2e-2,
        epochs=3,
        alpha=8.0,
        **settings,
    )
    model = load_model(config, resolve_runtime("cpu", "fp32", "sdpa"))
    result = train(config, model=model, plain=True)
    trained = dit_output(model.transformer)

    engine = make_engine(tmp_path)
    base = dit_output(engine.pipe.transformer)
    base_song = song(engine, tmp_path, "base")
    assert not torch.allclose(trained, base, atol=1e-4)  # the adapter learned something

    exports = [result.adapter_dir]
    if settings["adapter_type"] == "lora":
        exports.append(result.checkpoint_dir / "adapter_peft")  # original ACE-Step naming
    for index, folder in enumerate(exports):
        info = engine.load_adapter(folder, name=f"trained{index}")
        assert info.kind == settings["adapter_type"]
        torch.testing.assert_close(dit_output(engine.pipe.transformer), trained)
        assert not np.allclose(song(engine, tmp_path, f"styled{index}"), base_song, atol=1e-4)
        engine.unload_adapter(f"trained{index}")
    assert torch.equal(dit_output(engine.pipe.transformer), base)


def test_from_audio_folder_to_a_changed_song(tiny_checkpoint_dir: Path, tmp_path: Path, env_file: Path) -> None:
    """The issue's done criterion: `train.py fixed --preprocess ...` on a folder of
    audio, then the adapter loads into the engine and changes what it sings."""
    audio = make_audio_dir(tmp_path / "audio", ["synth.wav", "beat.mp3"])
    out = tmp_path / "out"
    command = [
        sys.executable,
        "train.py",
        "--plain",
        "--yes",
        "fixed",
        "--checkpoint-dir",
        str(tiny_checkpoint_dir),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--preprocess",
        "--audio-dir",
        str(audio),
        "--tensor-output",
        str(tmp_path / "tensors"),
        "--max-duration",
        "0.6",
        "--output-dir",
        str(out),
        "--epochs",
        "3",
        "--rank",
        "4",
        "--alpha",
        "8",
        "--lr",
        "0.02",
        "--gradient-accumulation",
        "1",
        "--warmup-steps",
        "0",
        "--num-workers",
        "0",
        "--device",
        "cpu",
    ]
    run = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **CHILD_ENV},
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "broken.mp3" in run.stdout + run.stderr  # reported, not fatal
    assert "Training finished at step 6" in run.stdout
    engine = make_engine(tmp_path)
    base = song(engine, tmp_path, "base")
    engine.load_adapter(out / "final" / "adapter", name="mine")
    assert not np.allclose(song(engine, tmp_path, "mine"), base, atol=1e-4)
