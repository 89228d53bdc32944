"""A tiny random-weight ACE-Step 1.5 of the real architectures, for tests and for
trying every command without the real weights (`python -m engine tiny-checkpoint`).

The components are the real classes (diffusers' `AceStepTransformer1DModel`,
`AceStepConditionEncoder`, audio tokenizer pair, `AutoencoderOobleck`; a
transformers Qwen3 text encoder with the offline tokenizer of engine/checkpoint/tokenizer.py)
with small widths. What makes durations and sample rates real is kept: 64 latent
channels at 25 frames per second, and a VAE that upsamples 1920x to 48 kHz stereo.
A 10 s text2music run with 8 steps takes well under a second on a CPU once warm.

The DiT is described once, in the original `config.json` form (`TINY_DIT_CONFIG`),
and turned into diffusers modules by the converter's own `component_configs`, so
the two layouts written here describe exactly the same model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from safetensors.torch import save_file

from engine.checkpoint.find import DIT_PREFIX, TEXT_ENCODER_FOLDER, VAE_FOLDER, Variant
from engine.checkpoint.layout import (
    COMPONENTS,
    CONDITION_ENCODER,
    SILENCE_KEY,
    component_classes,
    component_configs,
    to_original_key,
)
from engine.checkpoint.tokenizer import TINY_VOCAB_SIZE, build_tiny_tokenizer

if TYPE_CHECKING:
    from diffusers import AceStepPipeline

TinyLayout = Literal["diffusers", "original"]
VARIANTS: tuple[Variant, ...] = ("turbo", "base", "sft")
LAYOUTS: tuple[TinyLayout, ...] = ("diffusers", "original")

NOTICE = (
    "This is a TINY model with random weights: it makes noise, not music. It exists so "
    "that every command (generation, the bot, training) can be tried without the real "
    "ACE-Step 1.5 weights. For music, run './setup.sh --models' or "
    "'python -m engine download'."
)

#: The DiT in original `config.json` form (same keys as the released checkpoints).
TINY_DIT_CONFIG: dict[str, Any] = {
    "architectures": ["AceStepConditionGenerationModel"],
    "model_type": "acestep",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_audio_decoder_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "in_channels": 192,
    "audio_acoustic_hidden_dim": 64,
    "patch_size": 2,
    "rope_theta": 1000000,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "rms_norm_eps": 1e-06,
    "use_sliding_window": True,
    "sliding_window": 8,
    "layer_types": ["sliding_attention", "full_attention"],
    "text_hidden_dim": 32,
    "timbre_hidden_dim": 64,
    "timbre_fix_frame": 750,
    "num_lyric_encoder_hidden_layers": 1,
    "num_timbre_encoder_hidden_layers": 1,
    "num_attention_pooler_hidden_layers": 1,
    "pool_window_size": 5,
    "fsq_dim": 64,
    "fsq_input_levels": [8, 8, 8, 5, 5, 5],
    "fsq_input_num_quantizers": 1,
    "is_turbo": True,
    "model_version": "turbo",
}

#: Real hop (2*4*4*6*10 = 1920), rate and channels; a narrow decoder. The encoder
#: stays 128 wide as in the real VAE: its output holds the mean and scale of the
#: latent, so `encoder_hidden_size` must be twice the 64 latent channels for
#: `vae.encode` (cover, repaint, training) to give latents the DiT accepts. That
#: makes encoding the slow part of this tiny model (seconds per second of audio).
TINY_VAE_CONFIG: dict[str, Any] = {
    "encoder_hidden_size": 128,
    "downsampling_ratios": [2, 4, 4, 6, 10],
    "channel_multiples": [1, 1, 1, 1, 1],
    "decoder_channels": 4,
    "decoder_input_channels": 64,
    "audio_channels": 2,
    "sampling_rate": 48000,
}

TINY_TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "vocab_size": TINY_VOCAB_SIZE,
    "max_position_embeddings": 32768,
    "rope_theta": 10000.0,
}


def tiny_dit_config(variant: Variant = "turbo") -> dict[str, Any]:
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: allowed are {', '.join(VARIANTS)}")
    return {**TINY_DIT_CONFIG, "is_turbo": variant == "turbo", "model_version": variant}


def build_tiny_pipeline(variant: Variant = "turbo", seed: int = 0) -> AceStepPipeline:
    """A complete tiny `AceStepPipeline` in memory; the same `seed` gives the same
    weights (the global torch RNG is left as it was)."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from transformers import Qwen3Config, Qwen3Model

    configs = component_configs(tiny_dit_config(variant))
    classes = component_classes()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        modules = {name: classes[name](**configs[name]) for name in COMPONENTS}
        # Something other than zeros, as the real silence latent is.
        silence = getattr(modules[CONDITION_ENCODER], SILENCE_KEY)
        silence.copy_(torch.randn_like(silence) * 0.5)
        vae = AutoencoderOobleck(**TINY_VAE_CONFIG)
        text_encoder = Qwen3Model(Qwen3Config(**TINY_TEXT_ENCODER_CONFIG))
    return AceStepPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=build_tiny_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
        **{name: module.eval() for name, module in modules.items()},
    )


def _write_original(pipe: AceStepPipeline, dst: Path, variant: Variant) -> None:
    """The layout the ACE-Step app downloads: one DiT file with prefixed keys, the
    silence latent stored [1, C, T], and the shared VAE and text encoder."""
    dit = dst / f"{DIT_PREFIX}{variant}"
    dit.mkdir(parents=True)
    (dit / "config.json").write_text(json.dumps(tiny_dit_config(variant), indent=2) + "\n")
    tensors: dict[str, torch.Tensor] = {}
    for name in COMPONENTS:
        for key, tensor in getattr(pipe, name).state_dict().items():
            if (name, key) != (CONDITION_ENCODER, SILENCE_KEY):
                tensors[to_original_key(name, key)] = tensor.contiguous()
    save_file(tensors, str(dit / "model.safetensors"), {"format": "pt"})
    silence = getattr(pipe.condition_encoder, SILENCE_KEY)
    torch.save(silence.transpose(1, 2).contiguous(), dit / "silence_latent.pt")
    pipe.vae.save_pretrained(dst / VAE_FOLDER)
    pipe.text_encoder.save_pretrained(dst / TEXT_ENCODER_FOLDER)
    pipe.tokenizer.save_pretrained(dst / TEXT_ENCODER_FOLDER)


def write_tiny_checkpoint(
    dst: Path, *, layout: TinyLayout = "diffusers", variant: Variant = "turbo", seed: int = 0
) -> Path:
    """Write a tiny checkpoint into `dst` (created; must be empty or absent).

    `layout="diffusers"` writes a pipeline folder; `layout="original"` writes a
    `checkpoints/` folder (`acestep-v15-<variant>/`, `vae/`,
    `Qwen3-Embedding-0.6B/`) for the converter. Returns `dst`.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: allowed are {', '.join(LAYOUTS)}")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} is not empty: choose an empty or new folder")
    pipe = build_tiny_pipeline(variant, seed)
    dst.mkdir(parents=True, exist_ok=True)
    if layout == "diffusers":
        pipe.save_pretrained(dst)
    else:
        _write_original(pipe, dst, variant)
    return dst
