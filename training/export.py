"""Write a trained adapter as the engine loads it, and read it back for resuming.

- LoRA, diffusers naming: `pytorch_lora_weights.safetensors` written by
  `AceStepPipeline.save_lora_weights`, with rank, alpha and targets in its
  metadata (without alpha the loader assumes alpha = rank and the adapter plays
  at the wrong strength: the "LoRA has no audible effect" reports). It holds
  the LoRA matrices only, so diffusers' `load_lora_weights` takes it: that
  loader refuses any key without `lora` in it. With `--bias all` the trained
  biases of the base model go beside it, to `trained_biases.safetensors`,
  which resume reads but diffusers (and so the radio's engine) cannot apply;
  the original PEFT and ComfyUI exports carry them (training.export_formats).
- LoKR, LyCORIS naming: `lokr_weights.safetensors` (`lycoris_layers_0_...`).

`read_adapter_state` reads back what `write_adapter` wrote, for resuming.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from training.storage import atomic_path, write_json
from training.trainable_adapters import AdapterHandle, is_lora_key

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
BIASES_FILE = "trained_biases.safetensors"
LOKR_FILE = "lokr_weights.safetensors"
INFO_FILE = "adapter_info.json"
PREFIX = "transformer."


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
                transformer_lora_layers={k: v for k, v in state.items() if is_lora_key(k)},
                weight_name=temporary.name,
                transformer_lora_adapter_metadata={
                    "r": handle.config["r"],
                    "lora_alpha": handle.config["lora_alpha"],
                    "target_modules": handle.targets,
                },
            )
        extras = {k: v for k, v in state.items() if not is_lora_key(k)}
        if extras:
            with atomic_path(folder / BIASES_FILE) as temporary:
                save_file(extras, str(temporary), {"note": "not applied by diffusers' loader"})
    write_json(folder / INFO_FILE, {"kind": handle.kind, "targets": handle.targets, **info})
    return target


def read_adapter_state(folder: Path, kind: str) -> dict[str, torch.Tensor]:
    """The tensors `write_adapter` wrote, under `AdapterHandle.state_dict` names."""
    if kind == "lokr":
        return load_file(str(folder / LOKR_FILE))
    state = load_file(str(folder / DIFFUSERS_FILE))
    state = {k.removeprefix(PREFIX): v for k, v in state.items()}
    if (folder / BIASES_FILE).is_file():
        state.update(load_file(str(folder / BIASES_FILE)))
    return state


def read_info(folder: Path) -> dict:
    return json.loads((folder / INFO_FILE).read_text())
