"""Which songwriter model a GPU tier gets, and why (the choice; no download runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.gpu.tiers import DeviceInfo, resolve
from engine.settings import load_settings
from engine.songwriter.models import RECOMMENDED, choose_model, leftover_gb, recommend
from tests.support.engine_cli import run_engine

BUNDLED = "gemma-3-270m-q4_k_m.gguf"


def gpu(gb: float) -> DeviceInfo:
    return DeviceInfo("cuda", 0, "GPU", gb, gb, (8, 9), False)


def policy(gb: float | None, **settings_values: object):
    settings = load_settings(**settings_values)
    device = gpu(gb) if gb else DeviceInfo("cpu", None, "CPU", None, None, None, False)
    return settings, resolve(settings, device)


@pytest.mark.parametrize(
    ("gb", "model"),
    [
        (None, None),  # no GPU: the bundled model on the CPU
        (4.0, None),  # tier 1: the songwriter stays on the CPU
        (6.6, None),  # tier 3: 1.6 GB left, the smallest needs 1.7
        (7.8, "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"),  # an 8 GB card
        (11.7, "gemma-3-4b-it-Q4_K_M.gguf"),  # a 12 GB card
        (23.6, "gemma-3-4b-it-Q4_K_M.gguf"),
    ],
)
def test_the_recommended_model_fits_beside_the_music_engine(
    env_file: Path, gb: float | None, model: str | None
) -> None:
    _, p = policy(gb)
    chosen, why = recommend(p)
    assert (chosen.filename if chosen else None) == model
    assert why
    if chosen is not None:
        assert chosen.needs_gb <= leftover_gb(p)


def test_llm_gpu_layers_0_keeps_the_bundled_model(env_file: Path) -> None:
    _, p = policy(11.7, llm_gpu_layers=0)
    assert recommend(p)[0] is None


def test_auto_uses_the_recommended_model_once_downloaded(env_file: Path, tmp_path: Path) -> None:
    settings, p = policy(11.7, models_dir=tmp_path)
    before = choose_model(settings, p)
    assert before.name == BUNDLED and "until the recommended" in before.reason
    (tmp_path / RECOMMENDED[0].filename).write_bytes(b"GGUF")
    after = choose_model(settings, p)
    assert after.name == RECOMMENDED[0].filename and "recommended for this GPU" in after.reason
    named = choose_model(settings.model_copy(update={"llm_model_name": "mine.gguf"}), p)
    assert (named.name, named.reason) == ("mine.gguf", "set by LLM_MODEL_NAME")


def test_tiers_says_which_songwriter_model_and_why(env_file: Path) -> None:
    out = run_engine(["tiers"], env_file)
    assert out.returncode == 0, out.stderr
    assert f"songwriter model:  {BUNDLED}" in out.stdout and "no CUDA GPU" in out.stdout
    out = run_engine(["tiers"], env_file, MAX_CUDA_VRAM="12")
    assert "Gemma 3 4B" in out.stdout


def test_download_says_plainly_when_it_cannot(env_file: Path, tmp_path: Path) -> None:
    out = run_engine(
        ["download"],
        env_file,
        MAX_CUDA_VRAM="12",
        HF_HUB_OFFLINE="1",
        CHECKPOINT_DIR=str(tmp_path / "ckpt"),
        MODELS_DIR=str(tmp_path / "models"),
    )
    assert out.returncode == 1
    assert "Could not download ACE-Step/Ace-Step1.5" in out.stderr
    assert "Could not download ggml-org/gemma-3-4b-it-GGUF/gemma-3-4b-it-Q4_K_M.gguf" in out.stderr
    assert "Until then the bundled songwriter model is used." in out.stderr
