"""Defaults by compute capability, and one warning per unsafe setting, on faked cards.

`torch.cuda` is faked (fake_cuda.FakeCuda): this machine has no GPU. Everything
after the device properties (detection, tier, policy, report, engine) is real.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from engine.checkpoint.tiny import build_tiny_pipeline
from engine.gpu.report import format_policy
from engine.gpu.tiers import detect_device, resolve
from engine.music_engine import MusicEngine
from engine.settings import load_settings
from tests.support.fake_cuda import FakeCuda


@pytest.mark.parametrize(
    ("card", "capability", "dtype", "compiles", "llm_gpu_layers"),
    [
        # seeds/001's GPU matrix: "CPU Offload, LLM CPU" for both pre-Ampere cards.
        ("NVIDIA GeForce GTX 1070 Ti", (6, 1), "float16", False, 0),
        ("NVIDIA GeForce RTX 2070 SUPER", (7, 5), "float16", True, 0),
        ("NVIDIA GeForce RTX 4060", (8, 9), "bfloat16", True, -1),
    ],
)
def test_8gb_cards_get_the_defaults_of_their_compute_capability(
    env_file: Path, monkeypatch, card, capability, dtype, compiles, llm_gpu_layers
) -> None:
    FakeCuda(monkeypatch, total_gib=8.0, capability=capability, name=card)
    settings = load_settings()
    policy = resolve(settings, detect_device(settings))
    assert policy.device.name == card and policy.device.capability == capability
    assert policy.tier.name == "tier4"
    assert policy.cpu_offload and policy.dit_offload and policy.quantization == "int8"
    assert policy.dtype == dtype
    assert policy.torch_compile is compiles
    assert policy.llm_gpu_layers == llm_gpu_layers
    assert policy.songwriter_on_gpu is (llm_gpu_layers != 0)
    assert policy.max_batch == (2 if policy.songwriter_on_gpu else 4)
    assert policy.warnings == ()

    # `python -m engine tiers` says why each default was chosen.
    report = format_policy(policy)
    version = f"{capability[0]}.{capability[1]}"
    compile_line = next(line for line in report.splitlines() if line.startswith("TORCH_COMPILE"))
    assert version in compile_line and "Triton" in compile_line
    llm_line = next(line for line in report.splitlines() if line.startswith("LLM_GPU_LAYERS"))
    dtype_line = next(line for line in report.splitlines() if line.startswith("dtype"))
    if llm_gpu_layers == 0:
        assert "8 GB guide's GPU matrix" in llm_line and version in llm_line
        assert "no fast bfloat16" in dtype_line
    else:
        assert "shares the GPU from tier 3 up" in llm_line
        assert "bfloat16 natively" in dtype_line
    assert "tier4 default" in next(line for line in report.splitlines() if "CPU_OFFLOAD" in line)


def test_explicit_settings_still_win_on_an_old_card(env_file: Path, monkeypatch) -> None:
    FakeCuda(monkeypatch, total_gib=8.0, capability=(6, 1), name="NVIDIA GeForce GTX 1070 Ti")
    env_file.write_text("LLM_GPU_LAYERS=-1\nPRECISION=fp32\n")
    settings = load_settings()
    policy = resolve(settings, detect_device(settings))
    assert policy.llm_gpu_layers == -1 and policy.dtype == "float32"
    assert policy.reasons["LLM_GPU_LAYERS"] == "LLM_GPU_LAYERS=-1 in .env"
    assert policy.warnings == ()


def test_each_unsafe_setting_gets_one_warning_line_in_the_report_and_the_log(
    env_file: Path, monkeypatch, caplog, tmp_path: Path
) -> None:
    env_file.write_text("CPU_OFFLOAD=false\nDIT_OFFLOAD=false\nQUANTIZATION=none\n")
    settings = load_settings(tracks_dir=tmp_path)
    with monkeypatch.context() as faked:  # diffusers must not see the fake when it loads
        FakeCuda(faked, total_gib=3.8, capability=(8, 6), name="NVIDIA GeForce RTX 3050 4GB")
        policy = resolve(settings, detect_device(settings))
    assert policy.tier.name == "tier1"
    assert [w.split(" ", 1)[0] for w in policy.warnings] == [
        "CPU_OFFLOAD=false",
        "DIT_OFFLOAD=false",
        "QUANTIZATION=none",
    ]
    for warning, recommended in zip(
        policy.warnings, ("CPU_OFFLOAD=true", "DIT_OFFLOAD=true", "QUANTIZATION=int8"), strict=True
    ):
        assert "tier1" in warning and "mandatory" in warning
        assert f"tier1 recommends {recommended}" in warning
    report = format_policy(policy).splitlines()
    assert [line for line in report if line.startswith("warning: ")] == [f"warning: {w}" for w in policy.warnings]
    with caplog.at_level(logging.WARNING, logger="engine.music_engine"):
        MusicEngine(
            settings,
            policy=policy,
            pipeline=build_tiny_pipeline("turbo", seed=0),
            device=torch.device("cpu"),  # the CPU stands in for the faked card
        )
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Unsafe")]
    assert logged == [f"Unsafe setting: {w}" for w in policy.warnings]


@pytest.mark.parametrize(
    ("gib", "capability", "env", "flagged"),
    [
        (
            8.0,
            (8, 9),
            "CPU_OFFLOAD=false\nDIT_OFFLOAD=false\nQUANTIZATION=none\n",
            ["CPU_OFFLOAD", "DIT_OFFLOAD", "QUANTIZATION"],
        ),
        (8.0, (8, 9), "QUANTIZATION=none\n", []),  # the DiT still leaves the GPU
        (5.8, (8, 6), "LLM_GPU_LAYERS=-1\n", ["LLM_GPU_LAYERS"]),
        (8.0, (6, 1), "TORCH_COMPILE=true\n", ["TORCH_COMPILE"]),
        (8.0, (7, 5), "PRECISION=bf16\n", ["PRECISION"]),
        (24.0, (8, 9), "CPU_OFFLOAD=false\nQUANTIZATION=none\n", []),
    ],
)
def test_which_settings_are_unsafe_where(env_file: Path, monkeypatch, gib, capability, env, flagged) -> None:
    FakeCuda(monkeypatch, total_gib=gib, capability=capability)
    env_file.write_text(env)
    settings = load_settings()
    policy = resolve(settings, detect_device(settings))
    assert [w.split("=", 1)[0] for w in policy.warnings] == flagged
