"""The worker's adapters by name: loaded from ADAPTERS_DIR on first use, switched per
job, reloaded when retrained, and refused with a message naming the adapter."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.adapters.cache import AdapterCache
from engine.adapters.manager import AdapterError
from engine.music_engine import MusicEngine
from engine.settings import load_settings
from tests.support.adapter_files import write_diffusers_lora
from tests.support.tiny_engine import make_engine, song


@pytest.fixture
def engine(env_file: Path, tmp_path: Path) -> MusicEngine:
    return make_engine(load_settings(tracks_dir=tmp_path / "tracks"))


@pytest.fixture
def cache(engine: MusicEngine, tmp_path: Path) -> AdapterCache:
    write_diffusers_lora(tmp_path / "adapters" / "warm", seed=1)
    write_diffusers_lora(tmp_path / "adapters" / "cold", seed=2)
    return AdapterCache(engine, tmp_path / "adapters")


def test_adapters_load_once_and_switch_per_job(cache: AdapterCache, engine: MusicEngine, tmp_path: Path) -> None:
    base = song(engine, tmp_path, "base")
    cache.use("warm", 1.0)
    warm = song(engine, tmp_path, "warm")
    assert engine.adapters.active == "warm" and not np.array_equal(warm, base)
    cache.use("cold", 2.0)
    assert engine.adapters.active == "cold" and engine.adapters.loaded["cold"].scale == 2.0
    cache.use(None)
    assert engine.adapters.active is None
    assert np.array_equal(song(engine, tmp_path, "base-again"), base)
    cache.use("warm", 1.0)  # already loaded: a switch, not a second load
    assert sorted(engine.adapters.loaded) == ["cold", "warm"]
    assert np.array_equal(song(engine, tmp_path, "warm-again"), warm)


def test_an_adapter_trained_again_is_loaded_again(cache: AdapterCache, engine: MusicEngine, tmp_path: Path) -> None:
    cache.use("warm")
    first = song(engine, tmp_path, "first")
    folder = tmp_path / "adapters" / "warm"
    shutil.rmtree(folder)
    write_diffusers_lora(folder, seed=3)
    cache.use("warm")
    assert not np.array_equal(song(engine, tmp_path, "second"), first)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: None, r"adapter 'bad': there is no folder .*bad"),
        (lambda folder: folder.mkdir(), r"adapter 'bad': no adapter weights in"),
        (
            lambda folder: (folder.mkdir(), (folder / "x.safetensors").write_bytes(b"junk")),
            r"not a readable safetensors file",
        ),
    ],
    ids=["missing", "empty", "garbage"],
)
def test_a_broken_adapter_is_refused_and_the_engine_stays_as_it_was(
    cache: AdapterCache, engine: MusicEngine, tmp_path: Path, make, message: str
) -> None:
    cache.use("warm")
    make(tmp_path / "adapters" / "bad")
    with pytest.raises(AdapterError, match=message):
        cache.use("bad")
    assert engine.adapters.active == "warm" and sorted(engine.adapters.loaded) == ["warm"]


def test_unsafe_names_are_refused(cache: AdapterCache) -> None:
    for name in ("../warm", "..", "a/b"):
        with pytest.raises(AdapterError, match="is not allowed"):
            cache.use(name)


def test_at_most_max_loaded_adapters_stay_loaded_least_recently_used_goes(engine: MusicEngine, tmp_path: Path) -> None:
    for seed, name in enumerate(("one", "two", "three")):
        write_diffusers_lora(tmp_path / "adapters" / name, seed=seed)
    cache = AdapterCache(engine, tmp_path / "adapters", max_loaded=2)
    cache.use("one")
    cache.use("two")
    cache.use("one")  # "two" is now the one used longest ago
    cache.use("three")
    assert cache.loaded == ["one", "three"]
    assert sorted(engine.adapters.loaded) == ["one", "three"]
    assert engine.adapters.active == "three"
    cache.use("two")  # loaded again on demand
    assert sorted(engine.adapters.loaded) == ["three", "two"]


def test_a_name_ending_in_a_newline_is_refused(cache: AdapterCache) -> None:
    with pytest.raises(AdapterError, match="is not allowed"):
        cache.use("warm\n")
