from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import (
    INHERITED_SETTINGS_VARIABLE,
    PROJECT_ROOT,
    SettingsError,
    child_environment,
    load_settings,
)

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.secret-token-value-do-not-leak"


def test_defaults_match_the_8gb_guide(env_file: Path) -> None:
    s = load_settings()
    assert s.default_duration == 60
    assert s.max_length_max == 300
    assert s.batch_size == 1
    assert s.overlapped_decode is True
    assert s.cpu_offload is None and s.torch_compile is None  # auto: the tier decides
    assert s.llm_gpu_layers is None
    assert s.llm_context_size == 2048
    assert s.tracks_dir == PROJECT_ROOT / "data" / "tracks"


def test_reads_the_env_file_and_environment_wins(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file.write_text(
        "CPU_OFFLOAD=true\nTORCH_COMPILE=off\nLLM_GPU_LAYERS=-1\nBATCH_SIZE=5\n"
        "MAX_CUDA_VRAM=8\nLLM_MODEL_NAME=big.gguf\nQUANTIZATION=INT8\n"
    )
    monkeypatch.setenv("BATCH_SIZE", "3")
    s = load_settings()
    assert s.cpu_offload is True
    assert s.torch_compile is False
    assert s.llm_gpu_layers == -1
    assert s.batch_size == 3
    assert s.max_cuda_vram == 8.0
    assert s.llm_model_name == "big.gguf"
    assert s.quantization == "int8"


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("BATCH_SIZE", "two", "an integer from 1 to 8"),
        ("CPU_OFFLOAD", "maybe", "auto, true or false"),
        ("OVERLAPPED_DECODE", "auto", "true or false"),
        ("DEFAULT_DURATION", "9999", "from 10 to 600"),
        ("DEFAULT_DURATION", "5", "from 10 to 600"),
        ("MAX_LENGTH_MAX", "20", "from 30 to 600"),
        ("BATCH_SIZE", "0", "from 1 to 8"),
        ("MAX_CUDA_VRAM", "banana", "a number of GB from 1 to 1024"),
        ("MAX_CUDA_VRAM", "0", "a number of GB from 1 to 1024"),
        ("LLM_GPU_LAYERS", "-2", "-1 (all layers on the GPU)"),
        ("LLM_CONTEXT_SIZE", "100", "from 512 to 131072"),
        ("QUANTIZATION", "int4", "auto, none or int8"),
        ("DEVICE", "gpu", "auto, cpu, cuda or cuda:N"),
        ("ATTENTION_BACKEND", "xformers", "auto, sdpa or flash_attention_2"),
        ("PRECISION", "fp8", "auto, bf16, fp16 or fp32"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_a_wrong_value_gives_one_line_naming_key_value_and_allowed(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert len(info.value.lines) == 1
    line = info.value.lines[0]
    assert "\n" not in line
    assert f"{key}='{value}'" in line
    assert allowed in line


def test_default_duration_above_max_length_names_both_keys(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_DURATION", "400")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "DEFAULT_DURATION=400" in str(info.value)
    assert "MAX_LENGTH_MAX=300" in str(info.value)


def test_several_wrong_values_give_one_line_each(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file.write_text("BATCH_SIZE=-1\nCPU_OFFLOAD=maybe\n")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert len(info.value.lines) == 2


@pytest.mark.parametrize("word", ["yes", "ON", "1", "True"])
def test_switch_words(env_file: Path, monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    monkeypatch.setenv("CPU_OFFLOAD", word)
    monkeypatch.setenv("OVERLAPPED_DECODE", word)
    s = load_settings()
    assert s.cpu_offload is True and s.overlapped_decode is True


def test_empty_auto_values_mean_auto(env_file: Path) -> None:
    env_file.write_text("CPU_OFFLOAD=\nMAX_CUDA_VRAM=\nLLM_GPU_LAYERS=auto\n")
    s = load_settings()
    assert s.cpu_offload is None and s.max_cuda_vram is None and s.llm_gpu_layers is None


def test_relative_paths_are_inside_the_project_and_absolute_paths_kept(env_file: Path, tmp_path: Path) -> None:
    env_file.write_text(f"TRACKS_DIR=songs\nMODELS_DIR={tmp_path / 'm'}\n")
    s = load_settings()
    assert s.tracks_dir == PROJECT_ROOT / "songs"
    assert s.models_dir == tmp_path / "m"


def test_engine_settings_hold_no_bot_key(env_file: Path) -> None:
    """The bot's keys in `.env` are not the engine's: ignored, never kept, never checked."""
    env_file.write_text(f"DISCORD_TOKEN={TOKEN}\nBUFFER_SIZE=-1\nDJ_ROLE=DJ\nBATCH_SIZE=2\n")
    s = load_settings()
    assert s.batch_size == 2 and s.secrets == []
    assert not {"discord_token", "buffer_size", "dj_role"} & set(s.model_dump())
    assert TOKEN not in repr(s)


def test_a_child_given_its_parents_settings_never_reads_env(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's trainer: `load_settings` takes the parent's engine values, not `.env`."""
    handed = child_environment(load_settings(batch_size=3, device="cpu"))
    env_file.write_text(f"DISCORD_TOKEN={TOKEN}\nDEVICE=gpu\nBATCH_SIZE=8\n")
    for key, value in handed.items():
        monkeypatch.setenv(key, value)
    s = load_settings(tracks_dir="songs")
    assert (s.batch_size, s.device, s.tracks_dir) == (3, "cpu", PROJECT_ROOT / "songs")
    monkeypatch.setenv(INHERITED_SETTINGS_VARIABLE, "[1, 2]")
    with pytest.raises(SettingsError, match=INHERITED_SETTINGS_VARIABLE):
        load_settings()
