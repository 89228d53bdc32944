"""MusicEngine with tiny random-weight models of the real architectures (engine.checkpoint.tiny)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio import probe
from engine.checkpoint.tiny import build_tiny_pipeline
from engine.errors import GenerationError
from engine.gpu import placement
from engine.gpu.tiers import DeviceInfo, resolve
from engine.music_engine import MusicEngine
from engine.settings import load_settings
from engine.spec import SongSpec
from tests.support.engine_cli import run_engine

SPEC = SongSpec(
    title="Rainy Night",
    caption="lo-fi piano, soft rain",
    lyrics="[verse]\nrain on the window",
    bpm=90,
    key="A minor",
    duration=10,
    seed=1234,
)
CPU = DeviceInfo("cpu", None, "CPU", None, None, None, False)


@pytest.fixture
def settings(env_file: Path, tmp_path: Path):
    return load_settings(tracks_dir=tmp_path / "tracks", data_dir=tmp_path / "data")


def make_engine(settings, variant: str = "turbo", **policy_changes) -> MusicEngine:
    policy = dataclasses.replace(resolve(settings, CPU), **policy_changes)
    return MusicEngine(settings, policy=policy, pipeline=build_tiny_pipeline(variant, seed=0))


def wave(track) -> np.ndarray:
    data, _ = sf.read(track.path, dtype="float32")
    return data


@pytest.fixture
def engine(settings) -> MusicEngine:
    return make_engine(settings)


def test_generates_a_real_opus_file_with_the_right_duration(engine: MusicEngine) -> None:
    steps: list[tuple[int, int]] = []
    track = engine.generate(SPEC, progress=lambda i, n: steps.append((i, n)))[0]
    info = probe(Path(track.path))
    assert info.codec == "opus" and info.sample_rate == 48_000 and info.channels == 2
    assert info.duration == pytest.approx(10.0, abs=0.05)
    assert info.tags["title"] == "Rainy Night"
    assert steps == [(i, 8) for i in range(1, 9)]  # turbo: 8 steps, one callback each
    assert track.seed == 1234 and track.duration == pytest.approx(10.0)
    assert set(track.timings) == {"text", "dit", "vae", "encode"}
    assert all(v >= 0 for v in track.timings.values())
    assert track.settings["steps"] == 8 and track.settings["shift"] == 3.0
    assert track.settings["guidance"] == 1.0 and track.peak_memory_mb is None
    assert Path(track.path).parent == engine.settings.tracks_dir


def test_same_seed_same_audio_other_seed_other_audio(engine: MusicEngine, tmp_path: Path) -> None:
    a = engine.generate(SPEC, out_path=tmp_path / "a.wav", fmt="wav")[0]
    b = engine.generate(SPEC, out_path=tmp_path / "b.wav", fmt="wav")[0]
    c = engine.generate(SPEC.model_copy(update={"seed": 99}), out_path=tmp_path / "c.wav", fmt="wav")[0]
    assert np.array_equal(wave(a), wave(b))
    assert not np.allclose(wave(a), wave(c))


def test_batch_gives_one_track_per_seed(engine: MusicEngine, tmp_path: Path) -> None:
    engine.policy = dataclasses.replace(engine.policy, max_batch=2)
    tracks = engine.generate(SPEC, batch=2, out_path=tmp_path / "song.wav", fmt="wav")
    assert [t.seed for t in tracks] == [1234, 1235]
    assert [Path(t.path).name for t in tracks] == ["song.wav", "song-2.wav"]
    single = engine.generate(SPEC.model_copy(update={"seed": 1235}), out_path=tmp_path / "s.wav", fmt="wav")
    # batched matmuls round differently, so equal up to float noise
    assert np.allclose(wave(tracks[1]), wave(single[0]), atol=2e-3)


def test_duration_and_batch_are_clamped_with_warnings(engine: MusicEngine, tmp_path: Path) -> None:
    engine.policy = dataclasses.replace(engine.policy, max_duration=12, max_batch=1)
    track = engine.generate(SPEC.model_copy(update={"duration": 600}), batch=3, out_path=tmp_path / "x.ogg")[0]
    assert track.duration == pytest.approx(12.0) and track.spec.duration == 12
    assert len(track.warnings) == 2
    assert "600 s" in track.warnings[0] and "batch of 3" in track.warnings[1]


def test_models_are_loaded_once_and_reused(engine: MusicEngine, tmp_path: Path) -> None:
    transformer = engine.pipe.transformer
    for name in ("a", "b"):
        engine.generate(SPEC, out_path=tmp_path / f"{name}.ogg")
    assert engine.pipe.transformer is transformer


def test_bad_requests_give_clear_errors(engine: MusicEngine, tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="unknown output format 'aac'"):
        engine.generate(SPEC, fmt="aac")
    with pytest.raises(GenerationError, match="steps=500 is not allowed"):
        engine.generate(SPEC, steps=500)


def test_base_model_uses_cfg_with_the_learned_null_embedding(settings, tmp_path: Path) -> None:
    engine = make_engine(settings, variant="base")
    assert not engine.is_turbo
    calls: list[int] = []
    handle = engine.pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kw: calls.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    track = engine.generate(SPEC, steps=3, out_path=tmp_path / "base.ogg")[0]
    handle.remove()
    assert track.settings["guidance"] == 7.0 and track.settings["steps"] == 3
    assert calls == [2, 2, 2]  # conditional and null condition in one batch per step


def _outputs_match(settings, tmp_path: Path, name: str, **policy_changes) -> tuple[MusicEngine, np.ndarray]:
    engine = make_engine(settings, **policy_changes)
    return engine, wave(engine.generate(SPEC, out_path=tmp_path / f"{name}.wav", fmt="wav")[0])


def test_stage_offloader_moves_one_module_at_a_time() -> None:
    seen: list[set[str]] = []
    a, b, following = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    offloader = placement.StageOffloader(torch.device("cpu"), {"a": a, "b": b}, following)
    a(torch.ones(2))
    seen.append(set(offloader.on_device))
    b(torch.ones(2))
    seen.append(set(offloader.on_device))
    following(torch.ones(2))
    seen.append(set(offloader.on_device))
    assert seen == [{"a"}, {"b"}, set()]


def test_choose_placement_follows_the_policy() -> None:
    choose = placement.choose_placement
    assert choose(on_accelerator=False, cpu_offload=True, dit_offload=True, streamed=True) == "resident"
    assert choose(on_accelerator=True, cpu_offload=False, dit_offload=False, streamed=False) == "resident"
    assert choose(on_accelerator=True, cpu_offload=True, dit_offload=False, streamed=False) == "cpu-offload"
    assert choose(on_accelerator=True, cpu_offload=True, dit_offload=True, streamed=False) == "dit-offload"
    assert choose(on_accelerator=True, cpu_offload=True, dit_offload=True, streamed=True) == "streamed"
    with pytest.raises(ValueError, match="unknown placement"):
        placement.apply_placement(build_tiny_pipeline(), "everywhere", torch.device("cpu"))


def test_int8_quantization_runs_and_stays_close(settings, tmp_path: Path) -> None:
    _, reference = _outputs_match(settings, tmp_path, "ref")
    engine, quantized = _outputs_match(settings, tmp_path, "q", quantization="int8")
    weight = engine.pipe.transformer.layers[0].self_attn.to_q.weight
    assert "Int8" in type(weight).__name__
    assert engine.generate(SPEC, out_path=tmp_path / "q2.ogg")[0].settings["quantization"] == "int8"
    assert quantized.shape == reference.shape
    assert not np.array_equal(quantized, reference)


def test_torch_compile_is_applied(settings, tmp_path: Path) -> None:
    engine = make_engine(settings, torch_compile=True)
    assert engine.pipe.transformer._compiled_call_impl is not None
    track = engine.generate(SPEC.model_copy(update={"duration": 10}), steps=2, out_path=tmp_path / "c.ogg")[0]
    assert track.settings["torch_compile"] is True


@pytest.mark.parametrize("layout", ["diffusers", "original"])
def test_engine_loads_either_layout_through_the_real_loader(
    settings, tmp_path: Path, layout: str, tiny_checkpoint_dir, tiny_original_checkpoint_dir
) -> None:
    folder = tiny_checkpoint_dir if layout == "diffusers" else tiny_original_checkpoint_dir
    engine = MusicEngine(settings, policy=resolve(settings, CPU), checkpoint=folder)
    assert engine.is_turbo
    track = engine.generate(SPEC, out_path=tmp_path / "song.ogg")[0]
    assert probe(Path(track.path)).duration == pytest.approx(10.0, abs=0.05)


def test_generate_command_writes_a_playable_file(env_file: Path, tmp_path: Path, tiny_checkpoint_dir) -> None:
    out = tmp_path / "song.flac"
    args = [
        "generate",
        "--caption",
        "lo-fi piano",
        "--lyrics",
        "[verse]\nhello",
        "--duration",
        "10",
    ]
    args += ["--out", str(out), "--checkpoint", str(tiny_checkpoint_dir), "--seed", "42"]
    result = run_engine(args, env_file)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Wrote {out} (10.0 s, seed 42)" in result.stdout
    assert "DiT" in result.stdout and "VAE" in result.stdout
    info = probe(out)
    assert info.codec == "flac" and info.sample_rate == 48_000 and info.duration == pytest.approx(10.0, abs=0.01)


def test_generate_command_explains_bad_input(env_file: Path, tmp_path: Path) -> None:
    result = run_engine(["generate", "--caption", "x", "--out", str(tmp_path / "a.aac")], env_file)
    assert result.returncode == 2 and "allowed suffixes are" in result.stderr
    result = run_engine(["generate", "--caption", "x", "--bpm", "999", "--out", str(tmp_path / "a.ogg")], env_file)
    assert result.returncode == 2 and "invalid song" in result.stderr and "bpm" in result.stderr
    missing = tmp_path / "nothing-here"
    missing.mkdir()
    result = run_engine(
        [
            "generate",
            "--caption",
            "x",
            "--out",
            str(tmp_path / "a.ogg"),
            "--checkpoint",
            str(missing),
        ],
        env_file,
    )
    assert result.returncode == 1 and "setup.sh --models" in result.stderr


def test_the_same_song_twice_gets_two_files(engine: MusicEngine) -> None:
    first = engine.generate(SPEC)[0]
    second = engine.generate(SPEC)[0]
    assert first.path != second.path
    assert Path(first.path).exists() and Path(second.path).exists()
    assert "rainy-night-1234-" in Path(first.path).name


def test_a_failing_torch_compile_falls_back_to_eager(settings, tmp_path: Path, monkeypatch) -> None:
    def broken_backend(_graph, _inputs):
        raise RuntimeError("no C compiler on this system")

    real = placement.compile_modules
    monkeypatch.setattr(placement, "compile_modules", lambda modules: real(modules, backend=broken_backend))
    engine = make_engine(settings, torch_compile=True)
    assert engine.compiled
    first = engine.generate(SPEC, out_path=tmp_path / "first.wav", fmt="wav")[0]
    assert any("TORCH_COMPILE failed" in w and "no C compiler" in w for w in first.warnings)
    assert first.settings["torch_compile"] is False and not engine.compiled
    second = engine.generate(SPEC, out_path=tmp_path / "second.wav", fmt="wav")[0]
    assert second.warnings == ()
    _, eager = _outputs_match(settings, tmp_path, "eager")
    assert np.array_equal(wave(first), eager) and np.array_equal(wave(second), eager)


def test_int8_that_cannot_be_applied_runs_unquantized(settings, tmp_path: Path, monkeypatch, caplog) -> None:
    def unavailable(_transformer):
        raise ImportError("torchao is not installed")

    monkeypatch.setattr(placement, "quantize_int8", unavailable)
    engine = make_engine(settings, quantization="int8")
    assert "QUANTIZATION=int8 could not be applied (ImportError: torchao is not installed)" in caplog.text
    track = engine.generate(SPEC, out_path=tmp_path / "plain.ogg")[0]
    assert track.settings["quantization"] == "none"


def test_nan_latents_stop_the_song_with_the_likely_cause(settings, tmp_path: Path) -> None:
    """float16 overflowing in the DiT (GPUs before Ampere) gives NaN latents, which
    would decode to noise: the song is refused and PRECISION=fp32 suggested."""
    engine = make_engine(settings, dtype="float16")

    def overflow(_module, _args, output):
        return (torch.full_like(output[0], float("nan")), *output[1:])

    engine.pipe.transformer.register_forward_hook(overflow)
    with pytest.raises(GenerationError, match=r"NaN or infinite values in float16.*PRECISION=fp32"):
        engine.generate(SPEC, out_path=tmp_path / "nan.ogg")
    assert not (tmp_path / "nan.ogg").exists()


def test_an_instrumental_reaches_the_pipeline_as_upstream_encodes_it(engine: MusicEngine, monkeypatch) -> None:
    """Empty lyrics (an instrumental, or an old stored spec) reach the text encoder
    as `[Instrumental]` in the language `unknown`, as ACE-Step was trained."""
    seen: list[tuple[object, object]] = []
    real = engine.pipe.encode_prompt

    def spy(*args, **kwargs):  # the real encoder, with what it was given noted
        seen.append((kwargs.get("lyrics"), kwargs.get("vocal_language")))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.pipe, "encode_prompt", spy)
    spec = SPEC.model_copy(update={"lyrics": ""})  # as an old spec or a JSON file has it
    spec = SongSpec.model_validate_json(spec.model_dump_json())
    engine.generate(spec)
    assert seen and all(
        lyrics in (["[Instrumental]"], "[Instrumental]") and language in (["unknown"], "unknown")
        for lyrics, language in seen
    ), seen
