"""GPU memory: how much is free, what a song needs, and the guard in between.

The per-sample estimate is upstream ACE-Step's (activations only): 0.5 GB for
60 s plus 0.15 GB per extra minute, x1.7 for XL models and x2 with
classifier-free guidance, plus a 1.5 GB margin. Upstream measures the free
memory with the models resident; with DiT offload they are not while the engine
rests, so the weights the DiT stage brings in (`incoming_weights_gb`) are taken
off the free memory first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import OutOfMemoryError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MARGIN_GB = 1.5
#: (minimum free GB, VAE decode chunk in latent frames); 25 frames = 1 s of audio.
#: The tier guide's sizes (64 to 1536); upstream's code uses 128 to 512 with these
#: thresholds from 12 GB up, and this adds 1024 and 1536 for 32 and 48 GB free and
#: 64 below 4 GB free.
VAE_CHUNKS = (
    (48.0, 1536),
    (32.0, 1024),
    (24.0, 512),
    (16.0, 384),
    (12.0, 256),
    (4.0, 128),
    (0.0, 64),
)
CPU_VAE_CHUNK = 256
VAE_OVERLAP = 64
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Footprint:
    """Parameters per component and the DiT's number of blocks."""

    transformer: float
    condition_encoder: float
    text_encoder: float
    vae: float
    dit_blocks: int


#: The released ACE-Step 1.5 2B turbo (facts/acestep.md).
FULL_SIZE = Footprint(1.576e9, 0.608e9, 0.596e9, 0.169e9, 24)


def footprint_of(pipe) -> Footprint:
    def count(module: torch.nn.Module) -> float:
        return float(sum(p.numel() for p in module.parameters()))

    return Footprint(
        count(pipe.transformer),
        count(pipe.condition_encoder),
        count(pipe.text_encoder),
        count(pipe.vae),
        len(pipe.transformer.layers),
    )


def dit_stage_gb(placement: str, quantization: str | None, dtype: str, size: Footprint) -> float:
    """GiB of weights on the GPU while the DiT runs, for a placement (engine.gpu.placement)."""
    width = _BYTES[dtype]
    dit = size.transformer * (1 if quantization == "int8" else width)
    on_gpu = {
        "resident": dit + (size.condition_encoder + size.text_encoder + size.vae) * width,
        "cpu-offload": dit + size.condition_encoder * width,
        "dit-offload": dit,
        "streamed": 2 * dit / size.dit_blocks,  # the block running and the next one
    }[placement]
    return on_gpu / 1024**3


def incoming_weights_gb(pipe, placement: str, quantization: str | None, dtype: str) -> float:
    """GiB of weights that offload brings onto the GPU for the DiT stage: not on the
    GPU while the engine rests, so not in the free memory it measures then."""
    if placement not in ("dit-offload", "streamed"):
        return 0.0
    return dit_stage_gb(placement, quantization, dtype, footprint_of(pipe))


class VramError(OutOfMemoryError):
    """A request cannot fit in GPU memory, even at batch 1. The message says why."""


def estimate_gb(duration: float, batch: int = 1, *, xl: bool = False, cfg: bool = False) -> float:
    """GPU memory a generation needs beyond the resident models, in GB."""
    per_sample = 0.5 + 0.15 * max(duration - 60.0, 0.0) / 60.0
    if xl:
        per_sample *= 1.7
    if cfg:
        per_sample *= 2.0
    return per_sample * batch


def free_vram_gb(device_index: int = 0, cap_gb: float | None = None) -> float:
    """Free GPU memory in GB: what the driver reports plus what torch has cached but
    not allocated. With `MAX_CUDA_VRAM` (`cap_gb`) the cap counts as the card's size."""
    import torch

    free, _total = torch.cuda.mem_get_info(device_index)
    reserved = torch.cuda.memory_reserved(device_index)
    allocated = torch.cuda.memory_allocated(device_index)
    if cap_gb is not None:
        free = min(free, int(cap_gb * 1024**3) - reserved)
    return max(free + reserved - allocated, 0) / 1024**3


@dataclass(frozen=True)
class GuardDecision:
    batch: int
    needed_gb: float
    free_gb: float
    warnings: tuple[str, ...]


def guard(duration: float, batch: int, free_gb: float, *, xl: bool = False, cfg: bool = False) -> GuardDecision:
    """Lower `batch` until the song fits in `free_gb`, or refuse with `VramError`."""
    warnings: list[str] = []
    fitted = batch
    while fitted > 1 and estimate_gb(duration, fitted, xl=xl, cfg=cfg) + MARGIN_GB > free_gb:
        fitted -= 1
    needed = estimate_gb(duration, fitted, xl=xl, cfg=cfg)
    if needed + MARGIN_GB > free_gb:
        raise VramError(
            f"not enough GPU memory for a {duration:g} s track: it needs about "
            f"{needed + MARGIN_GB:.1f} GB (with a {MARGIN_GB} GB margin) and {free_gb:.1f} GB "
            "is free. Ask for a shorter track, set LLM_GPU_LAYERS=0 to move the songwriter "
            "off the GPU, or turn on CPU_OFFLOAD."
        )
    if fitted < batch:
        warnings.append(
            f"batch lowered from {batch} to {fitted}: {free_gb:.1f} GB of GPU memory is free "
            f"and {batch} songs of {duration:g} s need about "
            f"{estimate_gb(duration, batch, xl=xl, cfg=cfg) + MARGIN_GB:.1f} GB"
        )
        log.warning("VRAM guard: %s", warnings[-1])
    return GuardDecision(fitted, needed, free_gb, tuple(warnings))


def vae_chunk_frames(free_gb: float | None) -> int:
    """The VAE decode chunk for the free memory (`None`: decoding on the CPU)."""
    if free_gb is None:
        return CPU_VAE_CHUNK
    for minimum, frames in VAE_CHUNKS:
        if free_gb >= minimum:
            return frames
    return VAE_CHUNKS[-1][1]
