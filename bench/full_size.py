"""Full-size ACE-Step 1.5 2B turbo with random weights, for benchmarks on a GPU.

Speed and memory do not depend on the weights' values, so a random-weight model of
the real sizes measures what users will see without downloading anything. The DiT
config is the released 2B turbo's `config.json` (bench/turbo-2b-config.json), turned
into diffusers modules by the project's own converter; the VAE and the Qwen3 text
encoder use the released models' sizes. The tokenizer is the small offline one, so
prompts tokenize into more (cheaper) tokens than with Qwen's real vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.checkpoint.layout import CONDITION_ENCODER, TRANSFORMER, component_classes, component_configs
from engine.checkpoint.tokenizer import build_tiny_tokenizer

CONFIG = Path(__file__).with_name("turbo-2b-config.json")
#: ACE-Step 1.5's VAE: Oobleck with a 1920x hop, 48 kHz stereo, 64 latent channels.
VAE_CONFIG = {
    "encoder_hidden_size": 128,
    "downsampling_ratios": [2, 4, 4, 6, 10],
    "channel_multiples": [1, 2, 4, 8, 16],
    "decoder_channels": 128,
    "decoder_input_channels": 64,
    "audio_channels": 2,
    "sampling_rate": 48000,
}
#: Qwen3-Embedding-0.6B.
TEXT_ENCODER_CONFIG = {
    "vocab_size": 151669,
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Small normal weights (std 0.02), as a trained model's, so activations stay finite."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return module


def build_full_size_pipeline(dtype: torch.dtype = torch.bfloat16, seed: int = 0):
    """The 2B turbo pipeline on the CPU, in `dtype`, with random weights."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from transformers import Qwen3Config, Qwen3Model

    configs = component_configs(json.loads(CONFIG.read_text()))
    classes = component_classes()
    transformer = classes[TRANSFORMER](**configs[TRANSFORMER])
    condition_encoder = classes[CONDITION_ENCODER](**configs[CONDITION_ENCODER])
    text_encoder = Qwen3Model(Qwen3Config(**TEXT_ENCODER_CONFIG))
    vae = AutoencoderOobleck(**VAE_CONFIG)
    for index, module in enumerate((transformer, condition_encoder, text_encoder)):
        _randomize(module, seed + index)
    pipe = AceStepPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tiny_tokenizer(),
        transformer=transformer,
        condition_encoder=condition_encoder,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
    )
    return pipe.to(dtype=dtype)


def parameter_counts(pipe) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("transformer", "condition_encoder", "text_encoder", "vae")
    }
