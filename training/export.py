"""Write a trained adapter in the formats the engine and other tools load.

- LoRA, diffusers naming: `pytorch_lora_weights.safetensors` written by
  `AceStepPipeline.save_lora_weights`, with rank, alpha and targets in its
  metadata (without alpha the loader assumes alpha = rank and the adapter plays
  at the wrong strength: the "LoRA has no audible effect" reports).
- LoRA, original ACE-Step PEFT naming: `adapter_model.safetensors` with
  `base_model.model.layers.N.self_attn.q_proj.lora_A.weight` keys and
  `adapter_config.json`, for the ACE-Step app and ComfyUI.
- LoKR, LyCORIS naming: `lokr_weights.safetensors` (`lycoris_layers_0_...`).

`read_adapter_state` reads back what `write_adapter` wrote, for resuming.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from training.adapters import ORIGINAL_TO_DIFFUSERS, AdapterHandle
from training.storage import atomic_path, write_json

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
PEFT_FILE = "adapter_model.safetensors"
LOKR_FILE = "lokr_weights.safetensors"
INFO_FILE = "adapter_info.json"
PREFIX = "transformer."
PEFT_PREFIX = "base_model.model."


def _to_original(name: str) -> str:
    for original, diffusers in ORIGINAL_TO_DIFFUSERS.items():
        name = name.replace(f".{diffusers}.", f".{original}.")
    return name


def write_adapter(handle: AdapterHandle, folder: Path, info: dict) -> Path:
    """The engine-loadable adapter in `folder` (created); returns the weights file."""
    folder.mkdir(parents=True, exist_ok=True)
    state = handle.state_dict()
    if handle.kind == "lokr":
        target = folder / LOKR_FILE
        metadata = {"algo": "lokr", **{k: str(v) for k, v in handle.config.items()}}
        with atomic_path(target) as temporary:
            save_file(state, str(temporary), metadata)
    else:
        from diffusers import AceStepPipeline

        target = folder / DIFFUSERS_FILE
        with atomic_path(target) as temporary:
            AceStepPipeline.save_lora_weights(
                temporary.parent,
                transformer_lora_layers=state,
                weight_name=temporary.name,
                transformer_lora_adapter_metadata={
                    "r": handle.config["r"],
                    "lora_alpha": handle.config["lora_alpha"],
                    "target_modules": handle.targets,
                },
            )
    write_json(folder / INFO_FILE, {"kind": handle.kind, "targets": handle.targets, **info})
    return target


def write_peft_export(handle: AdapterHandle, folder: Path, info: dict) -> Path:
    """The original ACE-Step PEFT naming (LoRA only)."""
    if handle.kind != "lora":
        raise ValueError("the PEFT export is for LoRA adapters; LoKR is saved in LyCORIS naming")
    folder.mkdir(parents=True, exist_ok=True)
    state = {PEFT_PREFIX + _to_original(k): v for k, v in handle.state_dict().items()}
    target = folder / PEFT_FILE
    with atomic_path(target) as temporary:
        save_file(state, str(temporary), {"format": "pt"})
    originals = sorted({_to_original(f".{name}.").strip(".") for name in handle.targets})
    write_json(
        folder / "adapter_config.json",
        {
            "peft_type": "LORA",
            "r": handle.config["r"],
            "lora_alpha": handle.config["lora_alpha"],
            "lora_dropout": info.get("dropout", 0.0),
            "bias": handle.config.get("bias", "none"),
            "target_modules": originals,
            "base_model_name_or_path": info.get("base_model_name", ""),
            "task_type": None,
            "inference_mode": True,
        },
    )
    return target


def read_adapter_state(folder: Path, kind: str) -> dict[str, torch.Tensor]:
    """The tensors `write_adapter` wrote, under `AdapterHandle.state_dict` names."""
    if kind == "lokr":
        return load_file(str(folder / LOKR_FILE))
    state = load_file(str(folder / DIFFUSERS_FILE))
    return {k.removeprefix(PREFIX): v for k, v in state.items()}


def read_info(folder: Path) -> dict:
    return json.loads((folder / INFO_FILE).read_text())
