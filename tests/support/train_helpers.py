"""Helpers for the trainer's tests: audio files, a dataset preprocessed once per
session, fast configs, and a tiny model wide enough to overfit.

The tiny VAE encodes at a few seconds per second of audio on a CPU, so test
audio is short (0.6 s = 15 latent frames) and the shared dataset is made once
per session, under pytest's session temp folder, and copied by tests that
change it.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from training.config import TrainConfig

SAMPLE_RATE = 48_000
CLIP_SECONDS = 0.6
#: name -> (tone in Hz, sidecar files)
TRACKS: dict[str, tuple[float, dict[str, str]]] = {
    "synth.wav": (
        220.0,
        {
            "synth.txt": "caption: bright synth arpeggio\nbpm: 128\nkey: A minor\n"
            "timesignature: 4/4\nlyrics:\n[verse]\nneon lights\n"
        },
    ),
    "pad.flac": (330.0, {"pad.caption.txt": "warm ambient pad", "pad.lyrics.txt": "[Instrumental]"}),
    "beat.mp3": (110.0, {}),
    "drone.ogg": (55.0, {}),
}
BROKEN = "broken.mp3"
#: For child processes: one thread each (see `one_thread`).
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread. The tiny models gain nothing from more, and on a
    shared 2-core machine two threads per process made these tests 5-7x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread() -> Iterator[None]:
    """Import into a test module to run its tests on one torch thread."""
    with one_thread():
        yield


def tone(seconds: float, hz: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Stereo float32: a tone with a little noise (deterministic)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(int(hz))
    left = 0.4 * np.sin(2 * np.pi * hz * t) + 0.02 * rng.standard_normal(t.size)
    right = 0.4 * np.sin(2 * np.pi * hz * 1.5 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def write_audio(path: Path, seconds: float, hz: float) -> Path:
    """wav/flac through soundfile; mp3/ogg through ffmpeg (as users' files are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".wav", ".flac"):
        sf.write(path, tone(seconds, hz), SAMPLE_RATE)
        return path
    source = path.with_suffix(".source.wav")
    sf.write(source, tone(seconds, hz), SAMPLE_RATE)
    codec = ["-c:a", "libmp3lame"] if path.suffix == ".mp3" else ["-c:a", "libvorbis"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *codec, str(path)], check=True)
    source.unlink()
    return path


def make_audio_dir(folder: Path, names: list[str] | None = None, broken: bool = True) -> Path:
    for name in names or list(TRACKS):
        hz, sidecars = TRACKS[name]
        write_audio(folder / name, CLIP_SECONDS, hz)
        for sidecar, text in sidecars.items():
            (folder / sidecar).write_text(text)
    if broken:
        (folder / BROKEN).write_bytes(b"ID3 this is not really an mp3 file" * 10)
    return folder


def fast_config(checkpoint: Path, root: Path, **changes: Any) -> TrainConfig:
    """Small, quick settings on the CPU; `root` holds the conversion cache."""
    values: dict[str, Any] = {
        "checkpoint_dir": checkpoint,
        "cache_dir": root / "cache",
        "device": "cpu",
        "rank": 4,
        "alpha": 4.0,
        "epochs": 2,
        "gradient_accumulation": 1,
        "warmup_steps": 0,
        "num_workers": 0,
        "save_every": 0,
        "log_every": 1,
        "log_heavy_every": 0,
        "gradient_checkpointing": False,
        "max_duration": CLIP_SECONDS,
    }
    values.update(changes)
    return TrainConfig(**values)


def shared_dataset(base: Path, checkpoint: Path) -> tuple[Path, Path]:
    """(audio folder, preprocessed folder), made once per session under `base`."""
    from training.preprocess import preprocess

    root = base / "train-shared"
    audio, tensors = root / "audio", root / "tensors"
    if not (root / "done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        make_audio_dir(audio)
        config = fast_config(checkpoint, root, audio_dir=audio, tensor_output=tensors)
        with one_thread():
            preprocess(config.replace(preprocess=True))
        (root / "done").touch()
    return audio, tensors


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def wide_tiny_checkpoint(folder: Path) -> Path:
    """The tiny pipeline with a DiT 128 wide (twice the 64 latent channels) and an
    output projection scaled to a trained model's velocity range.

    The standard tiny DiT is 64 wide with patch size 2, so its output for two
    frames (128 values) lives in a 64-dimensional subspace: half of any target is
    out of reach and no adapter can halve its loss. This one can, which is what
    an overfitting smoke test needs to show the loop really learns."""
    from diffusers import AceStepTransformer1DModel

    from engine.checkpoint.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("turbo", seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        transformer = AceStepTransformer1DModel(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            in_channels=192,
            audio_acoustic_hidden_dim=64,
            patch_size=2,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention"],
            encoder_hidden_size=64,
            is_turbo=True,
            model_version="turbo",
        )
    with torch.no_grad():
        transformer.proj_out_conv.weight.mul_(3.0)
    pipe.register_modules(transformer=transformer.eval())
    pipe.save_pretrained(folder)
    return folder


def structured_dataset(checkpoint: Path, folder: Path, captions: list[str]) -> Path:
    """One track per caption: real text conditions from the pipeline's encoders,
    and latents with a clear pattern (a sine in time times a random channel
    profile, std about 1) instead of the random VAE's posterior noise."""
    from diffusers import AceStepPipeline

    from training.encoding import TrackText, context_latents, encode_conditions, encode_text
    from training.storage import Manifest, file_sha256, write_tensors

    pipe = AceStepPipeline.from_pretrained(checkpoint)
    cpu = torch.device("cpu")
    frames = 25
    manifest = Manifest(folder, model="structured", condition_dim=64, latent_channels=64)
    manifest.latents_per_second = 25.0
    generator = torch.Generator().manual_seed(0)
    time_axis = torch.arange(frames) / 25
    for index, caption in enumerate(captions):
        wave = torch.sin(2 * math.pi * (index + 1) * time_axis + index)
        latents = 1.5 * wave[:, None] * torch.randn(64, generator=generator)[None, :]
        text = encode_text(pipe, TrackText(caption, "", "en", 1.0), cpu)
        states, mask = encode_conditions(pipe, text, cpu)
        name = f"track-{index}.safetensors"
        write_tensors(
            folder / name,
            {
                "target_latents": latents,
                "encoder_hidden_states": states,
                "encoder_attention_mask": mask.to(torch.int8),
                "context_latents": context_latents(pipe, frames, cpu, torch.float32),
            },
            {},
        )
        manifest.samples[name] = {
            "key": name,
            "file": name,
            "sha256": file_sha256(folder / name),
            "source": "structured",
            "frames": frames,
            "duration": 1.0,
            "text": {"caption": caption, "lyrics": "", "language": "en"},
        }
    manifest.save()
    return folder
