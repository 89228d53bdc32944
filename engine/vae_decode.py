"""Adaptive VAE decode: latents -> 48 kHz audio without running out of memory.

The Oobleck decoder is convolutional, so a long song can be decoded in
windows. Each window is decoded with `overlap` extra latent frames on both
sides, and those edges are cut away afterwards ("overlap and discard"), so
the seams fall where the decoder saw full context.

On out-of-memory, three strategies are tried in order (each logged):
1. `tiled`: windows decoded on the accelerator, audio kept there.
2. `tiled-audio-to-cpu`: the same, but each window's audio moves to the CPU
   at once, so only one window's audio is ever on the accelerator.
3. `cpu`: the VAE moves to the CPU and decodes there (slow, but it finishes).
On a CPU-only machine all three run on the CPU.
With `OVERLAPPED_DECODE` off, step 1 (`whole`) decodes the whole song in one go.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeReport:
    strategy: str
    chunk_frames: int
    fallbacks: tuple[str, ...]


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def hop_length(vae: torch.nn.Module) -> int:
    """Audio samples per latent frame (1920 for ACE-Step 1.5's VAE)."""
    return int(math.prod(vae.config.downsampling_ratios))


def decode_windows(
    vae: torch.nn.Module,
    latents: torch.Tensor,
    chunk: int,
    overlap: int,
    *,
    audio_device: torch.device,
) -> torch.Tensor:
    """Decode `latents` [B, C, T] window by window; returns audio [B, channels, T*hop]
    on `audio_device`. `chunk <= 0` decodes everything at once."""
    total = latents.shape[-1]
    if chunk <= 0 or chunk >= total:
        return vae.decode(latents).sample.to(audio_device)
    hop = hop_length(vae)
    pieces = []
    for start in range(0, total, chunk):
        end = min(start + chunk, total)
        lo, hi = max(start - overlap, 0), min(end + overlap, total)
        audio = vae.decode(latents[..., lo:hi]).sample
        keep = audio[..., (start - lo) * hop : (start - lo) * hop + (end - start) * hop]
        pieces.append(keep.to(audio_device, non_blocking=audio_device.type == "cpu"))
    return torch.cat(pieces, dim=-1)


@torch.no_grad()
def decode_adaptive(
    vae: torch.nn.Module,
    latents: torch.Tensor,
    device: torch.device,
    *,
    chunk: int,
    overlap: int,
    overlapped: bool = True,
    free_memory: Callable[[], None] = lambda: None,
) -> tuple[torch.Tensor, DecodeReport]:
    """Decode `latents` [B, C, T] to float32 audio [B, channels, samples] on the CPU,
    one sample of the batch at a time, falling back as described in the module
    docstring. `free_memory` is called between attempts (e.g. to empty the CUDA cache).
    """
    cpu = torch.device("cpu")
    fallbacks: list[str] = []
    attempts: list[tuple[str, torch.device, int, torch.device]] = [
        ("tiled", device, chunk, device) if overlapped else ("whole", device, 0, device),
        ("tiled-audio-to-cpu", device, chunk, cpu),
        ("cpu", cpu, chunk, cpu),
    ]
    for index, (name, run_on, window, audio_on) in enumerate(attempts):
        try:
            vae.to(run_on)
            outputs = [
                decode_windows(
                    vae,
                    latents[i : i + 1].to(run_on, vae.dtype),
                    window,
                    overlap,
                    audio_device=audio_on,
                )
                for i in range(latents.shape[0])
            ]
            audio = torch.cat(outputs).to(cpu, torch.float32)
            return audio, DecodeReport(name, window, tuple(fallbacks))
        except Exception as error:
            if not is_out_of_memory(error) or index == len(attempts) - 1:
                raise
            fallbacks.append(name)
            log.warning(
                "VAE decode ran out of memory with strategy %s (chunk %d frames); trying %s",
                name,
                window,
                attempts[index + 1][0],
            )
            free_memory()
    raise AssertionError("unreachable")
