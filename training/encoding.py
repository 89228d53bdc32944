"""Turn one track into what the DiT sees, exactly as inference does.

Every step calls the pipeline's own code, so training sees the same inputs
that `AceStepPipeline.__call__` (and so the station's engine) will feed the
model at inference:

- `encode_text`: `pipe.encode_prompt` with the text2music instruction, the
  SFT prompt template and the lyrics template (`_format_prompt`), and the
  metas (bpm, key, time signature, and the duration of the audio actually
  kept, after truncation);
- `encode_conditions`: `pipe.condition_encoder(...)` with the silence latent as
  the timbre reference, as `__call__` does when no reference audio is given;
- `context_latents`: `prepare_src_latents` (silence) and `_build_chunk_mask`
  (all ones) concatenated, as for text2music;
- `encode_audio`: the VAE, in tiles with overlap (as upstream's `tiled_encode`:
  30 s tiles, 15 s on 8 GB cards, 2 s overlap), sampling the posterior (as
  upstream does) with a seeded generator so a rerun writes the same latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.vae_decode import hop_length

if TYPE_CHECKING:
    from diffusers import AceStepPipeline

TASK = "text2music"
OVERLAP_SECONDS = 2.0


@dataclass(frozen=True)
class TrackText:
    """What the prompt says about one track (None: the template writes N/A)."""

    caption: str
    lyrics: str
    language: str
    duration: float
    bpm: int | None = None
    keyscale: str | None = None
    timesignature: str | None = None


@torch.no_grad()
def encode_text(pipe: AceStepPipeline, text: TrackText, device: torch.device) -> dict:
    """Caption through the whole text encoder, lyrics through its embeddings only."""
    text_states, text_mask, lyric_states, lyric_mask = pipe.encode_prompt(
        prompt=text.caption,
        lyrics=text.lyrics,
        device=device,
        vocal_language=text.language,
        audio_duration=text.duration,
        instruction=pipe._get_task_instruction(task_type=TASK),
        bpm=text.bpm,
        keyscale=text.keyscale,
        timesignature=text.timesignature,
    )
    return {
        "text_hidden_states": text_states[0],
        "text_attention_mask": text_mask[0],
        "lyric_hidden_states": lyric_states[0],
        "lyric_attention_mask": lyric_mask[0],
    }


def timbre_reference(pipe: AceStepPipeline, device: torch.device, dtype: torch.dtype):
    """The silence latent `__call__` gives the timbre encoder without reference audio."""
    frames = math.ceil(30 * pipe.latents_per_second)
    silence = pipe.condition_encoder.silence_latent[:, :frames, :]
    return silence.to(device=device, dtype=dtype).contiguous(), torch.arange(1, device=device, dtype=torch.long)


@torch.no_grad()
def encode_conditions(pipe: AceStepPipeline, text: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`encoder_hidden_states [L, D]` and `encoder_attention_mask [L]` for one track."""
    encoder = pipe.condition_encoder
    dtype = encoder.dtype
    refer, order = timbre_reference(pipe, device, dtype)
    states, mask = encoder(
        text_hidden_states=text["text_hidden_states"][None].to(device, dtype),
        text_attention_mask=text["text_attention_mask"][None].to(device),
        lyric_hidden_states=text["lyric_hidden_states"][None].to(device, dtype),
        lyric_attention_mask=text["lyric_attention_mask"][None].to(device),
        refer_audio_acoustic_hidden_states_packed=refer,
        refer_audio_order_mask=order,
    )
    return states[0], mask[0]


@torch.no_grad()
def context_latents(pipe: AceStepPipeline, frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`[frames, 2 * 64]`: silence source latents and a chunk mask of ones."""
    source, frames = pipe.prepare_src_latents(device=device, dtype=dtype, batch_size=1, latent_length=frames)
    acoustic = pipe.transformer.config.audio_acoustic_hidden_dim
    mask = pipe._build_chunk_mask(TASK, frames, 1, device, dtype, acoustic)
    return torch.cat([source, mask], dim=-1)[0]


def tile_frames(tile_seconds: float, latents_per_second: float) -> tuple[int, int]:
    """(tile, overlap) in latent frames for a tile length in seconds."""
    overlap = max(1, round(OVERLAP_SECONDS * latents_per_second))
    tile = max(round(tile_seconds * latents_per_second), 2 * overlap + 1)
    return tile, overlap


@torch.no_grad()
def encode_audio(
    vae: torch.nn.Module,
    audio: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Audio `[channels, samples]` -> latents `[frames, 64]` (float32, on the CPU).

    The audio is zero-padded to whole latent frames. Longer than `tile` frames,
    it is encoded in windows whose cores advance by `tile - 2 * overlap` frames,
    each seeing `overlap` frames of context on both sides that are cut away, so
    every kept frame was encoded with full context (as in the engine's decoder).
    The posterior is sampled once for the whole track (mean + std * noise), so
    the latents do not depend on the tiling.
    """
    hop = hop_length(vae)
    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    frames = math.ceil(audio.shape[-1] / hop)
    padded = torch.nn.functional.pad(audio, (0, frames * hop - audio.shape[-1]))[None]

    def encode(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        piece = padded[..., lo * hop : hi * hop].to(device=device, dtype=dtype)
        posterior = vae.encode(piece).latent_dist
        return posterior.mean.float().cpu(), posterior.std.float().cpu()

    if frames <= tile:
        mean, std = encode(0, frames)
    else:
        core = tile - 2 * overlap
        means, stds = [], []
        for start in range(0, frames, core):
            end = min(start + core, frames)
            lo, hi = max(start - overlap, 0), min(end + overlap, frames)
            piece_mean, piece_std = encode(lo, hi)
            means.append(piece_mean[..., start - lo : end - lo])
            stds.append(piece_std[..., start - lo : end - lo])
        mean, std = torch.cat(means, dim=-1), torch.cat(stds, dim=-1)
    noise = torch.randn(mean.shape, generator=generator)
    return (mean + std * noise)[0].transpose(0, 1)
