"""Finding and loading checkpoints through the real loader (engine.checkpoint.load), with the
tiny random-weight models of engine.checkpoint.tiny in both layouts."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from engine.checkpoint.find import (
    CheckpointError,
    CheckpointInfo,
    find_checkpoint,
    inspect_checkpoint,
)
from engine.checkpoint.load import LoadedPipeline, load_pipeline, resolve_dtype
from engine.checkpoint.tiny import build_tiny_pipeline
from engine.checkpoint.tokenizer import END_OF_TEXT, build_tiny_tokenizer
from engine.settings import load_settings

COMPONENTS = (
    "transformer",
    "condition_encoder",
    "audio_tokenizer",
    "audio_token_detokenizer",
    "vae",
    "text_encoder",
)


@pytest.fixture(scope="module")
def loaded_tiny(tiny_checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_pipeline(tiny_checkpoint_dir, dtype="float32", cache_dir=tmp_path_factory.mktemp("cache"))


def _state(pipe, name: str) -> dict[str, torch.Tensor]:
    return getattr(pipe, name).state_dict()


def test_inspect_tells_layout_variant_and_size(tiny_checkpoint_dir: Path, tiny_original_checkpoint_dir: Path) -> None:
    diffusers = inspect_checkpoint(tiny_checkpoint_dir)
    assert (diffusers.layout, diffusers.variant, diffusers.is_turbo, diffusers.is_xl) == (
        "diffusers",
        "turbo",
        True,
        False,
    )
    original = inspect_checkpoint(tiny_original_checkpoint_dir)
    assert original == CheckpointInfo(tiny_original_checkpoint_dir, "original", "acestep-v15-turbo", "turbo", False)
    assert original.dit_dir == tiny_original_checkpoint_dir / "acestep-v15-turbo"
    # Pointing at the DiT folder itself finds the same checkpoint.
    assert inspect_checkpoint(tiny_original_checkpoint_dir / "acestep-v15-turbo") == original


def test_loads_the_diffusers_layout_on_cpu(loaded_tiny: LoadedPipeline) -> None:
    pipe, info = loaded_tiny
    assert info.layout == "diffusers" and info.is_turbo
    assert pipe.is_turbo and pipe.sample_rate == 48000 and pipe.latents_per_second == 25.0
    for name in COMPONENTS:
        module = getattr(pipe, name)
        assert module.device.type == "cpu"
        assert module.dtype == torch.float32
    assert pipe.tokenizer.pad_token == END_OF_TEXT


def test_loaded_weights_are_the_tiny_builders(loaded_tiny: LoadedPipeline) -> None:
    built = build_tiny_pipeline("turbo", seed=0)
    for name in COMPONENTS:
        want, got = _state(built, name), _state(loaded_tiny.pipe, name)
        assert want.keys() == got.keys()
        for key in want:
            assert torch.equal(want[key], got[key]), f"{name}.{key}"


def test_short_generation_gives_latents_of_the_right_shape(loaded_tiny: LoadedPipeline) -> None:
    pipe = loaded_tiny.pipe
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="a calm piano piece",
        lyrics="[verse]\nla la la",
        audio_duration=10,
        num_inference_steps=2,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    latents = out.audios
    assert latents.shape == (1, 250, 64)  # 10 s x 25 frames/s, 64 channels
    assert torch.isfinite(latents).all()


def test_original_layout_loads_with_the_same_weights(
    tiny_original_checkpoint_dir: Path, loaded_tiny: LoadedPipeline, tmp_path: Path
) -> None:
    pipe, info = load_pipeline(tiny_original_checkpoint_dir, dtype="float32", cache_dir=tmp_path)
    assert info.layout == "original" and info.name == "acestep-v15-turbo"
    for name in COMPONENTS:
        want, got = _state(loaded_tiny.pipe, name), _state(pipe, name)
        assert want.keys() == got.keys(), name
        for key in want:
            assert torch.equal(want[key], got[key]), f"{name}.{key}"
    assert isinstance(pipe.tokenizer, type(loaded_tiny.pipe.tokenizer))


def test_dtype_is_applied(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    pipe, _ = load_pipeline(tiny_checkpoint_dir, dtype=torch.bfloat16, cache_dir=tmp_path)
    assert pipe.transformer.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16


def test_resolve_dtype_names_what_is_allowed() -> None:
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="allowed are float32, bfloat16, float16"):
        resolve_dtype("int8")


def test_find_checkpoint_reads_checkpoint_dir(env_file: Path, tiny_checkpoint_dir: Path) -> None:
    env_file.write_text(f"CHECKPOINT_DIR={tiny_checkpoint_dir}\n")
    assert find_checkpoint(load_settings()).path == tiny_checkpoint_dir


def test_find_checkpoint_without_weights_says_how_to_get_them(env_file: Path, tmp_path: Path) -> None:
    env_file.write_text(f"CHECKPOINT_DIR={tmp_path / 'nothing'}\n")
    with pytest.raises(CheckpointError) as err:
        find_checkpoint(load_settings())
    message = str(err.value)
    assert "CHECKPOINT_DIR=" in message and "nothing" in message
    assert "./setup.sh --models" in message and "python -m engine download" in message


def test_tiny_tokenizer_is_reproducible_and_pads() -> None:
    first, second = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    batch = first(
        ["short", f"a longer text, with ünïcode ♪{END_OF_TEXT}"],
        padding="longest",
        truncation=True,
        max_length=256,
        return_tensors="pt",
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert int(ids.max()) < 300
    assert mask[0].sum() < mask[1].sum()  # the short one is padded
    eos = first.convert_tokens_to_ids(END_OF_TEXT)
    assert int(ids[1, int(mask[1].sum()) - 1]) == eos  # special token kept whole


def test_diffusers_folder_without_tokenizer_files(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pipe"
    shutil.copytree(tiny_checkpoint_dir, copy)
    (copy / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"no tokenizer files.*tokenizer\.json"):
        inspect_checkpoint(copy)


def test_diffusers_folder_without_a_component(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pipe"
    shutil.copytree(tiny_checkpoint_dir, copy)
    (copy / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"transformer weights.*diffusion_pytorch_model"):
        inspect_checkpoint(copy)
    index = json.loads((copy / "model_index.json").read_text())
    del index["vae"]
    (copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not list the 'vae' component"):
        inspect_checkpoint(copy)


def test_damaged_weights_give_a_checkpoint_error(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pipe"
    shutil.copytree(tiny_checkpoint_dir, copy)
    (copy / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="Could not load the pipeline"):
        load_pipeline(copy, dtype="float32", cache_dir=tmp_path / "cache")


def test_tiny_vae_has_the_real_audio_format() -> None:
    vae = build_tiny_pipeline().vae
    assert vae.config.sampling_rate == 48000 and vae.config.audio_channels == 2
    assert math.prod(vae.config.downsampling_ratios) == 1920
    audio = torch.randn(1, 2, 19200)  # 0.4 s of stereo (encoding is the slow part)
    with torch.no_grad():
        latents = vae.encode(audio).latent_dist.mean
        assert latents.shape == (1, 64, 10)  # what the DiT takes: 64 channels, 25 per second
        assert vae.decode(latents).sample.shape == (1, 2, 19200)
