from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from engine.gpu.report import format_policy, format_table
from engine.gpu.tiers import (
    CPU_TIER,
    TIERS,
    DeviceError,
    DeviceInfo,
    clamp_request,
    detect_device,
    resolve,
    tier_for_vram,
)
from engine.settings import load_settings
from tests.support.engine_cli import run_engine
from tests.support.fake_cuda import FakeCuda


@pytest.mark.parametrize(
    ("gb", "name"),
    [
        (None, "cpu"),
        (1.0, "tier1"),
        (3.8, "tier1"),  # a 4 GB card
        (4.0, "tier1"),
        (4.49, "tier1"),
        (4.5, "tier2"),
        (5.8, "tier2"),  # a 6 GB card
        (6.0, "tier2"),
        (6.49, "tier2"),
        (6.5, "tier3"),
        (7.0, "tier3"),
        (7.49, "tier3"),
        (7.5, "tier4"),
        (7.79, "tier4"),  # RTX 3070
        (7.996, "tier4"),  # RTX 4060 Laptop
        (8.0, "tier4"),  # MAX_CUDA_VRAM=8
        (10.0, "tier4"),
        (11.49, "tier4"),
        (11.5, "tier5"),
        (11.7, "tier5"),  # a 12 GB card
        (12.0, "tier5"),
        (15.49, "tier5"),
        (15.5, "tier6a"),
        (16.0, "tier6a"),
        (19.49, "tier6a"),
        (19.5, "tier6b"),
        (20.0, "tier6b"),
        (23.49, "tier6b"),
        (23.5, "unlimited"),
        (23.6, "unlimited"),  # RTX 4090
        (24.0, "unlimited"),
        (80.0, "unlimited"),
    ],
)
def test_tier_boundaries(gb: float | None, name: str) -> None:
    assert tier_for_vram(gb).name == name


def test_tier_table_is_ordered_and_limits_grow() -> None:
    assert [t.min_gb for t in TIERS] == sorted(t.min_gb for t in TIERS)
    for lower, upper in itertools.pairwise(TIERS):
        assert upper.max_batch_without_lm >= lower.max_batch_without_lm
        assert upper.max_batch_with_lm >= lower.max_batch_with_lm
    # seeds/004: offload and INT8 disappear from tier 6b on.
    assert [t.quantization for t in TIERS].count(None) == 2
    assert not TIERS[-1].cpu_offload and not TIERS[-1].dit_offload


def _cuda(gb: float, capability=(8, 9), simulated=False) -> DeviceInfo:
    return DeviceInfo("cuda", 0, "Test GPU", gb, gb, capability, simulated)


def _cpu(cap: float | None = None) -> DeviceInfo:
    return DeviceInfo("cpu", None, "CPU", None, cap, None, cap is not None)


def test_8gb_gpu_policy_defaults(env_file: Path) -> None:
    p = resolve(load_settings(), _cuda(7.996))
    assert p.tier.name == "tier4"
    assert p.cpu_offload and p.dit_offload and p.quantization == "int8" and p.torch_compile
    assert p.llm_gpu_layers == -1 and p.songwriter_on_gpu
    assert p.max_batch == 2  # with the songwriter on the GPU
    assert p.max_duration == 300  # MAX_LENGTH_MAX is below the tier's 480
    assert p.dtype == "bfloat16"
    assert p.notes == ()


def test_env_overrides_win_over_the_tier(env_file: Path) -> None:
    env_file.write_text(
        "CPU_OFFLOAD=false\nDIT_OFFLOAD=false\nQUANTIZATION=none\nTORCH_COMPILE=false\n"
        "LLM_GPU_LAYERS=0\nOVERLAPPED_DECODE=false\n"
    )
    p = resolve(load_settings(), _cuda(7.9))
    assert not (p.cpu_offload or p.dit_offload or p.torch_compile or p.overlapped_decode)
    assert p.quantization is None
    assert p.llm_gpu_layers == 0 and not p.songwriter_on_gpu
    assert p.max_batch == 4  # tier 4 without LM


def test_big_gpu_turns_policies_off_and_low_tiers_keep_the_songwriter_on_cpu(
    env_file: Path,
) -> None:
    s = load_settings()
    big = resolve(s, _cuda(80.0))
    assert not big.cpu_offload and big.quantization is None and big.max_batch == 8
    small = resolve(s, _cuda(5.8))
    assert small.llm_gpu_layers == 0 and not small.songwriter_on_gpu
    assert small.quantization == "int8"


def test_fp16_before_ampere(env_file: Path) -> None:
    assert resolve(load_settings(), _cuda(8.0, capability=(7, 5))).dtype == "float16"


@pytest.mark.parametrize(
    ("precision", "gpu", "cpu"),
    [("FP32", "float32", "float32"), ("bf16", "bfloat16", "bfloat16"), ("fp16", "float16", None)],
)
def test_precision_overrides_the_default_dtype(env_file: Path, precision: str, gpu: str, cpu: str | None) -> None:
    env_file.write_text(f"PRECISION={precision}\n")
    assert resolve(load_settings(), _cuda(8.0, capability=(7, 5))).dtype == gpu
    on_cpu = resolve(load_settings(), _cpu())
    assert on_cpu.dtype == (cpu or "float32")
    assert any("PRECISION=fp16 does not run on the CPU" in n for n in on_cpu.notes) is (cpu is None)


@pytest.mark.parametrize(("gb", "streamed"), [(3.8, True), (5.8, True), (7.0, False), (8.0, False)])
def test_smallest_tiers_stream_the_dit_and_do_not_compile_int8(env_file: Path, gb: float, streamed: bool) -> None:
    p = resolve(load_settings(), _cuda(gb))
    assert p.dit_offload and p.quantization == "int8"
    assert p.streamed_offload is streamed
    assert p.torch_compile is not streamed
    assert any("TORCH_COMPILE is off" in n for n in p.notes) is streamed
    assert ("blocks streamed to the GPU" in format_policy(p)) is streamed
    env_file.write_text("QUANTIZATION=none\nTORCH_COMPILE=true\n")
    unquantized = resolve(load_settings(), _cuda(gb))
    assert unquantized.streamed_offload is streamed and unquantized.torch_compile


def test_cpu_defaults_and_explicit_gpu_only_options_are_noted(env_file: Path) -> None:
    p = resolve(load_settings(), _cpu())
    assert p.tier is CPU_TIER and p.dtype == "float32" and p.attention == "sdpa"
    assert not (p.cpu_offload or p.dit_offload or p.torch_compile) and p.quantization is None
    env_file.write_text("CPU_OFFLOAD=true\nQUANTIZATION=int8\n")
    p = resolve(load_settings(), _cpu())
    assert not p.cpu_offload and p.quantization is None
    assert any("CPU_OFFLOAD=true has no effect" in n for n in p.notes)
    assert any("QUANTIZATION=int8 needs a GPU" in n for n in p.notes)


def test_tier_caps_max_length_and_batch_with_notes(env_file: Path) -> None:
    env_file.write_text("MAX_LENGTH_MAX=600\nDEFAULT_DURATION=400\nBATCH_SIZE=8\n")
    p = resolve(load_settings(), _cuda(3.8))
    assert p.tier.name == "tier1"
    assert p.max_duration == 360 and p.default_duration == 360 and p.batch_size == 1
    joined = " ".join(p.notes)
    assert "MAX_LENGTH_MAX=600" in joined and "BATCH_SIZE=8" in joined
    assert "DEFAULT_DURATION=400" in joined


def test_flash_attention_requested_without_it_falls_back_with_a_note(env_file: Path) -> None:
    env_file.write_text("ATTENTION_BACKEND=flash_attention_2\n")
    p = resolve(load_settings(), _cuda(24.0))
    assert p.attention == "sdpa"
    assert any("flash_attention_2" in n for n in p.notes)


@pytest.mark.parametrize(
    ("duration", "batch", "want_duration", "want_batch", "n_warnings"),
    [
        (60, 1, 60, 1, 0),
        (300, 2, 300, 2, 0),
        (301, 1, 300, 1, 1),
        (9999, 1, 300, 1, 1),
        (3, 1, 10, 1, 1),
        (60, 3, 60, 2, 1),
        (60, 0, 60, 1, 1),
        (1000, 16, 300, 2, 2),
    ],
)
def test_clamp_request(env_file: Path, duration, batch, want_duration, want_batch, n_warnings, caplog) -> None:
    p = resolve(load_settings(), _cuda(8.0))
    r = clamp_request(duration, batch, p)
    assert (r.duration, r.batch, len(r.warnings)) == (want_duration, want_batch, n_warnings)
    if n_warnings:
        assert "asked for" in r.warnings[0] and "tier4" in r.warnings[0]
        assert "Clamped request" in caplog.text


def test_detect_device_without_gpu(env_file: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert detect_device(load_settings()).kind == "cpu"
    monkeypatch.setenv("MAX_CUDA_VRAM", "8")
    d = detect_device(load_settings())
    assert d.kind == "cpu" and d.vram_gb == 8.0 and d.simulated
    assert resolve(load_settings(), d).tier.name == "tier4"
    monkeypatch.setenv("DEVICE", "cuda")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        detect_device(load_settings())


def test_max_cuda_vram_caps_a_real_gpu(env_file: Path, monkeypatch) -> None:
    fake = FakeCuda(monkeypatch)
    monkeypatch.setenv("MAX_CUDA_VRAM", "8")
    d = detect_device(load_settings())
    assert d.kind == "cuda" and d.simulated and d.vram_gb == 8.0 and d.total_gb == 80.0
    assert fake.fractions == [(pytest.approx(7.5 / 80.0), 0)]
    assert resolve(load_settings(), d).tier.name == "tier4"
    # A cap at or above the real size is ignored; apply_cap=False never caps.
    monkeypatch.setenv("MAX_CUDA_VRAM", "100")
    assert detect_device(load_settings()).vram_gb == 80.0
    monkeypatch.setenv("MAX_CUDA_VRAM", "12")
    detect_device(load_settings(), apply_cap=False)
    assert len(fake.fractions) == 1
    monkeypatch.setenv("DEVICE", "cuda:3")
    with pytest.raises(DeviceError, match="only 1 CUDA GPU"):
        detect_device(load_settings())


def test_reports_render(env_file: Path) -> None:
    table = format_table()
    for tier in (*TIERS, CPU_TIER):
        assert tier.name in table
    text = format_policy(resolve(load_settings(), _cpu(8.0)))
    assert "tier4" in text and "MAX_CUDA_VRAM=8" in text and "on a real 8 GB GPU" in text


def test_cli_tiers_shows_the_8gb_tier(env_file: Path) -> None:
    out = run_engine(["tiers"], env_file, MAX_CUDA_VRAM="8")
    assert out.returncode == 0, out.stderr
    assert "tier:              tier4" in out.stdout
    assert "max batch:         4" in out.stdout


def test_cli_tiers_all_and_json(env_file: Path) -> None:
    out = run_engine(["tiers", "--all"], env_file)
    assert out.returncode == 0 and "unlimited" in out.stdout and "tier6b" in out.stdout
    out = run_engine(["tiers", "--json"], env_file, MAX_CUDA_VRAM="6")
    assert out.returncode == 0 and '"tier": "tier2"' in out.stdout


def test_cli_bad_value_fails_with_one_line(env_file: Path) -> None:
    out = run_engine(["tiers"], env_file, MAX_CUDA_VRAM="banana")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "Invalid setting MAX_CUDA_VRAM='banana': allowed is empty, or a number of GB from 1 to 1024."
    ]
