from __future__ import annotations

import pytest

from engine.gpu import vram
from engine.gpu.vram import VramError, estimate_gb, guard, vae_chunk_frames


def test_estimate_follows_upstream_formula() -> None:
    assert estimate_gb(60) == pytest.approx(0.5)
    assert estimate_gb(180) == pytest.approx(0.8)
    assert estimate_gb(30) == pytest.approx(0.5)  # never below the 60 s figure
    assert estimate_gb(60, 4) == pytest.approx(2.0)
    assert estimate_gb(60, xl=True) == pytest.approx(0.85)
    assert estimate_gb(60, cfg=True) == pytest.approx(1.0)
    assert estimate_gb(60, xl=True, cfg=True) == pytest.approx(1.7)


def test_guard_keeps_a_batch_that_fits() -> None:
    decision = guard(60, 2, free_gb=3.0)
    assert decision.batch == 2 and decision.warnings == ()


def test_guard_lowers_the_batch_and_says_why(caplog) -> None:
    decision = guard(60, 4, free_gb=2.6)  # 4 x 0.5 + 1.5 = 3.5 > 2.6; 2 x 0.5 + 1.5 = 2.5 fits
    assert decision.batch == 2
    assert "batch lowered from 4 to 2" in decision.warnings[0]
    assert "2.6 GB of GPU memory is free" in decision.warnings[0]
    assert "VRAM guard" in caplog.text


def test_guard_refuses_what_cannot_fit_even_alone() -> None:
    with pytest.raises(VramError, match=r"not enough GPU memory for a 600 s track.*1\.9 GB is free"):
        guard(600, 1, free_gb=1.9)


@pytest.mark.parametrize(
    ("free", "frames"),
    [
        (None, vram.CPU_VAE_CHUNK),
        (80.0, 1536),
        (48.0, 1536),
        (40.0, 1024),
        (24.0, 512),
        (20.0, 384),
        (12.0, 256),
        (6.0, 128),
        (3.9, 64),
        (0.2, 64),
    ],
)
def test_vae_chunk_follows_free_memory(free, frames) -> None:
    assert vae_chunk_frames(free) == frames


def test_free_memory_counts_torchs_cache_and_honours_max_cuda_vram(monkeypatch) -> None:
    """What the driver reports free, plus what torch has cached but not allocated;
    with MAX_CUDA_VRAM the cap counts as the card's size."""
    import torch

    gib = 1024**3
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _index: (70 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda _index: 4 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda _index: 3 * gib)
    assert vram.free_vram_gb(0) == pytest.approx(71.0)
    assert vram.free_vram_gb(0, cap_gb=8) == pytest.approx(5.0)  # 8 - 4 reserved + 1 cached
    assert vram.free_vram_gb(0, cap_gb=3) == 0.0  # over the cap already: nothing is free
