"""Adaptive VAE decode on the tiny Oobleck VAE, with forced out-of-memory errors."""

from __future__ import annotations

import logging

import pytest
import torch

from engine.checkpoint.tiny import build_tiny_pipeline
from engine.vae_decode import decode_adaptive, decode_windows, hop_length


@pytest.fixture(scope="module")
def vae() -> torch.nn.Module:
    return build_tiny_pipeline("turbo", seed=0).vae.eval()


@pytest.fixture(scope="module")
def latents() -> torch.Tensor:
    return torch.randn(2, 64, 150, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
@torch.no_grad()
def expected(vae, latents) -> torch.Tensor:
    """Each sample decoded whole, in one go."""
    return torch.cat([vae.decode(latents[i : i + 1]).sample for i in range(2)])


@torch.no_grad()
def test_windows_with_overlap_match_a_whole_decode(vae, latents, expected) -> None:
    whole = expected[:1]
    tiled = decode_windows(vae, latents[:1], chunk=64, overlap=32, audio_device=torch.device("cpu"))
    assert tiled.shape == whole.shape == (1, 2, 150 * hop_length(vae))
    assert torch.allclose(tiled, whole, atol=1e-5)
    # Without overlap the seams show: the overlap is what makes windows exact.
    seams = decode_windows(vae, latents[:1], chunk=64, overlap=0, audio_device=torch.device("cpu"))
    assert not torch.allclose(seams, whole, atol=1e-5)


def test_hop_is_the_real_1920(vae) -> None:
    assert hop_length(vae) == 1920 and vae.config.sampling_rate == 48_000


class FlakyDecode:
    """Raises a CUDA-style out-of-memory error for the first `failures` calls."""

    def __init__(self, vae, failures: int):
        self.real, self.failures, self.calls = vae.decode, failures, 0

    def __call__(self, z):
        self.calls += 1
        if self.calls <= self.failures:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.real(z)


@pytest.mark.parametrize(
    ("failures", "strategy", "fallbacks"),
    [
        (0, "tiled", ()),
        (1, "tiled-audio-to-cpu", ("tiled",)),
        (2, "cpu", ("tiled", "tiled-audio-to-cpu")),
    ],
)
def test_out_of_memory_falls_back_step_by_step(
    vae, latents, expected, monkeypatch, caplog, failures, strategy, fallbacks
) -> None:
    monkeypatch.setattr(vae, "decode", FlakyDecode(vae, failures))
    freed: list[int] = []
    with caplog.at_level(logging.WARNING):
        audio, report = decode_adaptive(
            vae,
            latents,
            torch.device("cpu"),
            chunk=128,
            overlap=32,
            free_memory=lambda: freed.append(1),
        )
    assert audio.device.type == "cpu" and audio.dtype == torch.float32
    assert torch.allclose(audio, expected, atol=1e-5)
    assert report.strategy == strategy and report.fallbacks == fallbacks
    assert len(freed) == failures
    assert caplog.text.count("ran out of memory") == failures


def test_errors_other_than_out_of_memory_are_not_swallowed(vae, latents, monkeypatch) -> None:
    def broken(_z):
        raise ValueError("bad latents")

    monkeypatch.setattr(vae, "decode", broken)
    with pytest.raises(ValueError, match="bad latents"):
        decode_adaptive(vae, latents, torch.device("cpu"), chunk=128, overlap=32)


def test_out_of_memory_at_every_step_is_raised(vae, latents, monkeypatch) -> None:
    monkeypatch.setattr(vae, "decode", FlakyDecode(vae, 100))
    with pytest.raises(torch.OutOfMemoryError):
        decode_adaptive(vae, latents, torch.device("cpu"), chunk=128, overlap=32)


@pytest.mark.parametrize(("failures", "calls"), [(0, 2), (1, 1 + 2 * 2)])
def test_without_overlapped_decode_each_song_decodes_whole_until_memory_runs_out(
    vae, latents, expected, monkeypatch, failures, calls
) -> None:
    """OVERLAPPED_DECODE=false: one decode per sample; after an out-of-memory
    the fallback decodes in windows anyway (150 frames in 128-frame windows)."""
    flaky = FlakyDecode(vae, failures)
    monkeypatch.setattr(vae, "decode", flaky)
    audio, report = decode_adaptive(vae, latents, torch.device("cpu"), chunk=128, overlap=32, overlapped=False)
    assert torch.allclose(audio, expected, atol=1e-5)
    assert flaky.calls == calls
    assert (report.strategy, report.chunk_frames) == (("whole", 0) if failures == 0 else ("tiled-audio-to-cpu", 128))
