"""Each GPU tier's whole memory policy, run with the CPU standing in for the GPU.

The policy comes from `resolve` for a GPU of the tier's size, exactly as on a
real card (placement, INT8, torch.compile); only the device the models run on
is the CPU. What moves between devices, what is quantized and what is compiled
is the same code as on the GPU, so combinations that cannot work fail here too.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.checkpoint.tiny import build_tiny_pipeline
from engine.gpu.tiers import DeviceInfo, resolve
from engine.gpu.vram import VramError
from engine.music_engine import MusicEngine
from engine.settings import load_settings
from engine.spec import SongSpec
from tests.support.adapter_files import write_diffusers_lora, write_lokr

SPEC = SongSpec(title="Tiers", caption="dub techno", bpm=118, key="F minor", duration=10, seed=7)
CPU = torch.device("cpu")


@pytest.fixture
def settings(env_file: Path, tmp_path: Path):
    return load_settings(tracks_dir=tmp_path / "tracks")


def gpu_policy(settings, vram_gb: float, **changes):
    gpu = DeviceInfo("cuda", 0, "Simulated GPU", vram_gb, vram_gb, (8, 9), False)
    return dataclasses.replace(resolve(settings, gpu), **changes)


def engine_for(settings, policy) -> MusicEngine:
    return MusicEngine(settings, policy=policy, pipeline=build_tiny_pipeline("turbo", seed=0), device=CPU)


def song(engine: MusicEngine, tmp_path: Path, name: str):
    track = engine.generate(SPEC, out_path=tmp_path / f"{name}.wav", fmt="wav")[0]
    return track, sf.read(track.path, dtype="float32")[0]


@pytest.fixture
def reference(settings, tmp_path: Path) -> np.ndarray:
    cpu = DeviceInfo("cpu", None, "CPU", None, None, None, False)
    return song(engine_for(settings, resolve(settings, cpu)), tmp_path, "reference")[1]


@pytest.mark.parametrize(
    ("vram_gb", "placement"),
    [(4, "streamed"), (8, "dit-offload"), (12, "cpu-offload"), (24, "resident")],
)
def test_each_tiers_placement_gives_the_same_song(
    settings, tmp_path: Path, reference: np.ndarray, vram_gb: float, placement: str
) -> None:
    """Placements only move models: the song is bit-identical to the CPU's."""
    policy = gpu_policy(settings, vram_gb, quantization=None, torch_compile=False)
    engine = engine_for(settings, policy)
    assert engine.placement == placement
    for name in ("first", "second"):  # the second song starts from the offloaded state
        track, got = song(engine, tmp_path, name)
        assert np.array_equal(got, reference)
        assert track.settings["placement"] == placement
    if placement in ("cpu-offload", "streamed"):
        assert engine._offloader.on_device == set()  # text encoder released after the song
    if placement == "dit-offload":
        assert engine.pipe._all_hooks  # accelerate's offload hooks are in place


@pytest.mark.parametrize("vram_gb", [4, 12])
def test_the_text_encoder_visits_the_gpu_for_its_stage_only(settings, tmp_path: Path, vram_gb: float) -> None:
    """Tiers that keep the text encoder on the CPU (streamed on 1-2, CPU offload on
    5-6a) bring it in for its stage. It must still be there when the pipeline looks
    up the lyric tokens in its embedding table after its forward, and gone before
    the DiT runs."""
    policy = gpu_policy(settings, vram_gb, quantization=None, torch_compile=False)
    engine = engine_for(settings, policy)
    offloader, pipe = engine._offloader, engine.pipe
    seen: dict[str, set[str]] = {}

    def note(stage: str):
        return lambda *_: seen.__setitem__(stage, set(offloader.on_device))

    pipe.text_encoder.get_input_embeddings().register_forward_pre_hook(note("last lookup"))
    pipe.transformer.register_forward_pre_hook(note("dit"))
    song(engine, tmp_path, "song")
    assert seen == {"last lookup": {"text_encoder"}, "dit": set()}
    assert offloader.on_device == set()


def test_smallest_tiers_stream_int8_blocks_without_compiling(settings, tmp_path: Path, reference: np.ndarray) -> None:
    """Tiers 1 and 2: INT8 blocks streamed to the GPU. torch.compile cannot run with
    that (the offload swaps quantized weights inside the compiled graph), so the
    policy leaves it off and says why."""
    policy = gpu_policy(settings, 4)
    assert policy.streamed_offload and policy.quantization == "int8"
    assert not policy.torch_compile
    assert any("TORCH_COMPILE is off" in note for note in policy.notes)
    engine = engine_for(settings, policy)
    for name in ("first", "second"):
        track, got = song(engine, tmp_path, name)
        assert track.settings["placement"] == "streamed"
        assert track.settings["quantization"] == "int8" and not track.settings["torch_compile"]
        assert got.shape == reference.shape and not np.array_equal(got, reference)
        assert np.abs(got - reference).max() < 0.5  # INT8 changes the song, not into noise


def test_eight_gb_tier_runs_int8_compiled_offloaded_with_adapters(
    settings, tmp_path: Path, reference: np.ndarray
) -> None:
    """Tier 4 (8 GB) as the guide runs it: DiT offload, INT8, torch.compile, and a
    LoRA or a weight-decomposed LoKR applied on top of the INT8 weights."""
    policy = gpu_policy(settings, 8)
    assert (policy.dit_offload, policy.streamed_offload) == (True, False)
    assert policy.quantization == "int8" and policy.torch_compile
    engine = engine_for(settings, policy)
    # diffusers re-installs the offload hooks after loading a LoRA on its default
    # device, the GPU; here the CPU stands in for it.
    pipe = engine.pipe
    pipe.enable_model_cpu_offload = functools.partial(pipe.enable_model_cpu_offload, device=CPU)
    track, plain = song(engine, tmp_path, "plain")
    assert track.settings["torch_compile"] and track.warnings == ()
    assert track.settings["placement"] == "dit-offload"
    assert not np.array_equal(plain, reference)  # INT8

    # Each adapter recompiles the DiT (about 45 s on 2 CPU cores): a LoRA, and a LoKR
    # with weight decomposition (the plain LoKR path is a subset of it, tested uncompiled
    # in tests/engine/adapters/test_adapter_manager.py).
    adapters = {
        "lora": write_diffusers_lora(tmp_path / "lora"),
        "lokr-dora": write_lokr(tmp_path / "dora.safetensors", weight_decompose=True),
    }
    for name, path in adapters.items():
        engine.load_adapter(path, name=name)
        track, styled = song(engine, tmp_path, name)
        assert track.settings["adapter"] == name and track.settings["torch_compile"]
        assert not np.allclose(styled, plain, atol=1e-3), name
    engine.switch_adapter(None)
    # Back to the base sound, within one step of 16-bit audio (the DiT was recompiled).
    assert np.allclose(song(engine, tmp_path, "off")[1], plain, atol=1 / 2**15 + 1e-7)


def test_the_vram_guard_lowers_the_batch_or_refuses_before_singing(settings, tmp_path: Path, monkeypatch) -> None:
    """On a GPU the engine asks how much memory is free before each song (faked
    here): a batch that does not fit is lowered, a song that cannot fit is refused
    before anything runs, and the VAE window follows the free memory."""
    policy = gpu_policy(settings, 24, quantization=None, torch_compile=False)
    engine = engine_for(settings, policy)
    runs: list[int] = []
    engine.pipe.transformer.register_forward_pre_hook(lambda *_: runs.append(1))

    monkeypatch.setattr(engine, "_free_gb", lambda: 2.2)  # one 10 s song needs 2.0 GB
    tracks = engine.generate(SPEC, batch=2, out_path=tmp_path / "guarded.wav", fmt="wav")
    assert len(tracks) == 1 and tracks[0].settings["batch"] == 1
    assert any("batch lowered from 2 to 1" in w for w in tracks[0].warnings)
    assert tracks[0].settings["vae_chunk_frames"] == 64  # under 4 GB free
    assert runs

    runs.clear()
    monkeypatch.setattr(engine, "_free_gb", lambda: 1.2)
    with pytest.raises(VramError, match=r"not enough GPU memory for a 10 s track"):
        engine.generate(SPEC, out_path=tmp_path / "refused.wav", fmt="wav")
    assert runs == [] and not (tmp_path / "refused.wav").exists()
