"""Adapters on a loaded engine: LoRA (diffusers and original PEFT naming) and LoKR."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.adapters.manager import AdapterError
from engine.music_engine import MusicEngine
from engine.settings import load_settings
from tests.support.adapter_files import lora_weights, write_diffusers_lora, write_lokr, write_peft_lora
from tests.support.tiny_engine import SPEC, make_engine, song


@pytest.fixture
def settings(env_file: Path, tmp_path: Path):
    return load_settings(tracks_dir=tmp_path / "tracks")


@pytest.fixture
def engine(settings) -> MusicEngine:
    return make_engine(settings)


def test_lora_load_switch_scale_and_unload(engine: MusicEngine, tmp_path: Path) -> None:
    base = song(engine, tmp_path, "base")
    info = engine.load_adapter(write_diffusers_lora(tmp_path / "lora"), name="style")
    assert info.kind == "lora" and engine.adapters.active == "style"
    styled = song(engine, tmp_path, "styled")
    assert not np.allclose(styled, base, atol=1e-3)

    engine.switch_adapter(None)
    assert np.array_equal(song(engine, tmp_path, "off"), base)
    engine.switch_adapter("style", scale=0.0)
    assert np.allclose(song(engine, tmp_path, "zero"), base, atol=1e-4)
    engine.switch_adapter("style", scale=1.0)
    assert np.array_equal(song(engine, tmp_path, "again"), styled)

    engine.unload_adapter("style")
    assert engine.adapters.active is None and not engine.adapters.loaded
    assert np.array_equal(song(engine, tmp_path, "unloaded"), base)


def test_switching_between_two_loras_without_reloading(engine: MusicEngine, tmp_path: Path) -> None:
    transformer = engine.pipe.transformer
    engine.load_adapter(write_diffusers_lora(tmp_path / "one", seed=1), name="one")
    one = song(engine, tmp_path, "one")
    engine.load_adapter(write_diffusers_lora(tmp_path / "two", seed=2), name="two")
    two = song(engine, tmp_path, "two")
    assert not np.allclose(one, two, atol=1e-3)
    engine.switch_adapter("one")
    assert np.array_equal(song(engine, tmp_path, "one-again"), one)
    assert engine.pipe.transformer is transformer
    assert engine.generate(SPEC, out_path=tmp_path / "s.ogg")[0].settings["adapter"] == "one"


def test_original_peft_format_keeps_its_alpha(engine: MusicEngine, tmp_path: Path) -> None:
    """PEFT files keep alpha in adapter_config.json; it must not be lost (alpha 8, rank 4 = x2)."""
    engine.load_adapter(write_diffusers_lora(tmp_path / "diffusers", alpha=8), name="d")
    expected = song(engine, tmp_path, "d")
    engine.unload_adapter("d")
    engine.load_adapter(write_peft_lora(tmp_path / "peft", alpha=8), name="p")
    assert np.allclose(song(engine, tmp_path, "p"), expected, atol=1e-5)
    engine.unload_adapter("p")
    engine.load_adapter(write_diffusers_lora(tmp_path / "alpha4", alpha=4), name="a4")
    assert not np.allclose(song(engine, tmp_path, "a4"), expected, atol=1e-3)


def test_lokr_load_and_unload(engine: MusicEngine, tmp_path: Path) -> None:
    base = song(engine, tmp_path, "base")
    info = engine.load_adapter(write_lokr(tmp_path / "style.safetensors"), name="lokr", scale=1.0)
    assert info.kind == "lokr"
    styled = song(engine, tmp_path, "lokr")
    assert not np.allclose(styled, base, atol=1e-3)
    engine.switch_adapter(None)
    assert np.allclose(song(engine, tmp_path, "lokr-off"), base, atol=1e-6)
    engine.switch_adapter("lokr")
    assert np.allclose(song(engine, tmp_path, "lokr-on"), styled, atol=1e-6)
    engine.unload_adapter("lokr")
    assert np.array_equal(song(engine, tmp_path, "lokr-gone"), base)


def test_lora_applies_on_an_int8_quantized_dit(settings, tmp_path: Path) -> None:
    engine = make_engine(settings, quantization="int8")
    base = song(engine, tmp_path, "q-base")
    engine.load_adapter(write_diffusers_lora(tmp_path / "lora"), name="style")
    assert not np.allclose(song(engine, tmp_path, "q-styled"), base, atol=1e-3)
    engine.unload_adapter("style")
    assert np.array_equal(song(engine, tmp_path, "q-after"), base)


def _broken_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file")
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"some.weight": torch.zeros(2, 2)}, unrelated)
    wrong_shape = tmp_path / "wrong_shape"
    state = {f"transformer.{k}": torch.zeros(v.shape[0], v.shape[1] + 3) for k, v in lora_weights().items()}
    wrong_shape.mkdir()
    save_file(state, wrong_shape / "pytorch_lora_weights.safetensors")
    elsewhere = tmp_path / "elsewhere.safetensors"
    save_file({"transformer.blocks.9.attn.to_q.lora_A.weight": torch.zeros(4, 8)}, elsewhere)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    return {
        "garbage": (garbage, "not a readable safetensors file"),
        "unrelated": (unrelated, "not a LoRA or LoKR adapter"),
        "wrong_shape": (wrong_shape, "could not load adapter 'wrong_shape'"),
        "elsewhere": (elsewhere, "could not load adapter 'elsewhere'"),
        "missing": (tmp_path / "nope.safetensors", "does not exist"),
        "empty_dir": (empty_dir, "no adapter weights"),
    }


@pytest.mark.parametrize("case", ["garbage", "unrelated", "wrong_shape", "elsewhere", "missing", "empty_dir"])
def test_a_broken_adapter_leaves_the_engine_as_it_was(engine: MusicEngine, tmp_path: Path, case: str) -> None:
    engine.load_adapter(write_diffusers_lora(tmp_path / "good"), name="good")
    before = song(engine, tmp_path, "before")
    path, message = _broken_files(tmp_path)[case]
    with pytest.raises(AdapterError, match=message):
        engine.load_adapter(path)
    assert engine.adapters.active == "good" and list(engine.adapters.loaded) == ["good"]
    assert np.array_equal(song(engine, tmp_path, "after"), before)


def test_bad_names_and_scales_are_refused(engine: MusicEngine, tmp_path: Path) -> None:
    lora = write_diffusers_lora(tmp_path / "lora")
    with pytest.raises(AdapterError, match=re.escape("name '../x' is not allowed")):
        engine.load_adapter(lora, name="../x")
    with pytest.raises(AdapterError, match="scale 9 is not allowed"):
        engine.load_adapter(lora, scale=9)
    engine.load_adapter(lora, name="a")
    with pytest.raises(AdapterError, match="already loaded"):
        engine.load_adapter(lora, name="a")
    with pytest.raises(AdapterError, match="no adapter named 'b' is loaded; loaded: a"):
        engine.switch_adapter("b")
    with pytest.raises(AdapterError, match="no adapter named 'b'"):
        engine.unload_adapter("b")
