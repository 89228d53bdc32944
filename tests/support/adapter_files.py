"""Adapter files for the tiny DiT, written as the trainers of each format write them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.adapters.random_lora import save_lora
from engine.checkpoint.tiny import build_tiny_pipeline

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def lora_weights(rank: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random LoRA weights for the tiny DiT, in diffusers naming (without prefix)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = build_tiny_pipeline("turbo", seed=0).transformer
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return get_peft_model_state_dict(transformer)


def write_diffusers_lora(folder: Path, rank: int = 4, alpha: float = 4, seed: int = 1) -> Path:
    return save_lora(folder, lora_weights(rank, seed), rank, alpha)


def write_peft_lora(folder: Path, rank: int = 4, alpha: float = 8, seed: int = 1) -> Path:
    """The original ACE-Step trainer's format: PEFT names, q_proj..o_proj, config beside."""
    renames = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out.0": "o_proj"}
    state = {}
    for key, value in lora_weights(rank, seed).items():
        for new, old in renames.items():
            key = key.replace(f".{new}.", f".{old}.")
        state[f"base_model.model.{key}"] = value.contiguous()
    folder.mkdir(parents=True)
    save_file(state, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(
        json.dumps(
            {
                "r": rank,
                "lora_alpha": alpha,
                "peft_type": "LORA",
                "target_modules": list(renames.values()),
            }
        )
    )
    return folder


def write_lokr(file: Path, seed: int = 2, weight_decompose: bool = False) -> Path:
    """A LoKR with random factors; `weight_decompose` adds DoRA-style magnitudes
    (kept as initialised: the norms of the layers' weights)."""
    from lycoris import create_lycoris

    transformer = build_tiny_pipeline("turbo", seed=0).transformer
    network = create_lycoris(
        transformer,
        1.0,
        linear_dim=4,
        linear_alpha=4,
        algo="lokr",
        factor=4,
        weight_decompose=weight_decompose,
    )
    network.apply_to()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if "dora_scale" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    network.save_weights(str(file), torch.float32, None)
    return file
