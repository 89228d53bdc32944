"""A random LoRA that fits any ACE-Step DiT, for checks that need "an adapter on".

The tier test runs each tier's policy with an adapter loaded, as a station that
sings with one would; real adapters are trained per model size, so the test
writes one of the right shapes: rank-`rank` LoRA factors on every attention
projection of the transformer, in diffusers naming, saved the way
`AceStepPipeline.save_lora_weights` saves the trainer's adapters.
"""

from __future__ import annotations

from pathlib import Path

import torch

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def random_lora_state(
    transformer: torch.nn.Module, rank: int = 4, seed: int = 0, std: float = 0.05
) -> dict[str, torch.Tensor]:
    """`<module>.lora_A.weight` [rank, in] and `.lora_B.weight` [out, rank] per projection."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(TARGETS) and "attn" in name:
            shape_a, shape_b = (rank, module.in_features), (module.out_features, rank)
            state[f"{name}.lora_A.weight"] = torch.randn(shape_a, generator=generator) * std
            state[f"{name}.lora_B.weight"] = torch.randn(shape_b, generator=generator) * std
    if not state:
        raise ValueError("the transformer has no attention projections to adapt")
    return state


def save_lora(folder: Path, state: dict[str, torch.Tensor], rank: int, alpha: float) -> Path:
    """LoRA factors in diffusers naming, saved as the trainer saves them (rank and
    alpha in the file's metadata); returns the folder."""
    from diffusers import AceStepPipeline

    AceStepPipeline.save_lora_weights(
        folder,
        transformer_lora_layers=state,
        transformer_lora_adapter_metadata={
            "r": rank,
            "lora_alpha": alpha,
            "target_modules": list(TARGETS),
        },
    )
    return folder


def write_random_lora(transformer: torch.nn.Module, folder: Path, rank: int = 4) -> Path:
    """Save a random LoRA for `transformer` in `folder`; returns the folder."""
    return save_lora(folder, random_lora_state(transformer, rank), rank, rank)
