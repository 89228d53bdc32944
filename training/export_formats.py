"""The adapter for other tools: the original ACE-Step naming, and ComfyUI.

The engine loads `final/adapter/` (training.export, diffusers naming). Other
tools name the DiT's modules as the original ACE-Step model does
(`decoder.layers.0.self_attn.q_proj`, not `layers.0.self_attn.to_q`; the
renames are engine.checkpoint.convert's). At the end of a run the trainer also writes:

- LoRA, `final/adapter_peft/`: `adapter_model.safetensors` with
  `base_model.model.layers.N.self_attn.q_proj.lora_A.weight` keys and
  `adapter_config.json` (rank, alpha, targets, bias), as PEFT saves an adapter
  of the original decoder: the ACE-Step app loads it. With `--bias all` it holds
  the trained biases too.
- LoRA, `final/adapter_comfyui/comfyui_lora.safetensors`: the same keys plus a
  `<module>.alpha` tensor per module. ComfyUI scales each module by
  alpha / rank only when that tensor is there (without it, an adapter trained
  at alpha = 2 x rank plays at half strength). With `--bias all` the change of
  each trained bias is there as `<module>.diff_b`, which ComfyUI adds.
- LoKR, `final/adapter_original/lokr_weights.safetensors`: LyCORIS tensors
  under the original module names (`lycoris_layers_0_self_attn_q_proj.lokr_w1`,
  with LyCORIS's own `.alpha`), as the ACE-Step app (LyCORIS on its decoder) and
  ComfyUI's ACE-Step 1.5 support read them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from training.storage import atomic_path, write_json
from training.trainable_adapters import AdapterHandle, is_lora_key

PEFT_FOLDER = "adapter_peft"
PEFT_FILE = "adapter_model.safetensors"
COMFYUI_FOLDER = "adapter_comfyui"
COMFYUI_FILE = "comfyui_lora.safetensors"
LOKR_ORIGINAL_FOLDER = "adapter_original"
LOKR_ORIGINAL_FILE = "lokr_weights.safetensors"
PEFT_PREFIX = "base_model.model."
LYCORIS_PREFIX = "lycoris_"
_DECODER = "decoder."


def original_name(name: str) -> str:
    """A DiT tensor or module name as the original model's decoder names it:
    `layers.0.self_attn.to_out.0.lora_A.weight` -> `layers.0.self_attn.o_proj.lora_A.weight`."""
    from engine.checkpoint.convert import TRANSFORMER, to_original_key

    # The renames match whole dotted segments followed by a dot: add one, then drop it.
    return to_original_key(TRANSFORMER, name + ".")[:-1].removeprefix(_DECODER)


def _module_of(key: str) -> str:
    """`layers.0.self_attn.to_q.lora_A.weight` -> `layers.0.self_attn.to_q`."""
    for marker in (".lora_A.", ".lora_B."):
        if marker in key:
            return key.split(marker)[0]
    return key.rsplit(".", 1)[0]  # a bias: `proj_in_conv.bias` -> `proj_in_conv`


def _save(folder: Path, file: str, state: dict[str, torch.Tensor], metadata: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file
    with atomic_path(target) as temporary:
        save_file({k: v.contiguous() for k, v in state.items()}, str(temporary), metadata)
    return target


def write_peft_export(handle: AdapterHandle, folder: Path, info: dict) -> Path:
    """The original ACE-Step PEFT naming (LoRA only)."""
    if handle.kind != "lora":
        raise ValueError("the PEFT export is for LoRA adapters; LoKR has its own")
    state = {PEFT_PREFIX + original_name(k): v for k, v in handle.state_dict().items()}
    target = _save(folder, PEFT_FILE, state, {"format": "pt"})
    write_json(
        folder / "adapter_config.json",
        {
            "peft_type": "LORA",
            "r": handle.config["r"],
            "lora_alpha": handle.config["lora_alpha"],
            "lora_dropout": info.get("dropout", 0.0),
            "bias": handle.config.get("bias", "none"),
            "target_modules": sorted({original_name(name) for name in handle.targets}),
            "base_model_name_or_path": info.get("base_model_name", ""),
            "task_type": None,
            "inference_mode": True,
        },
    )
    return target


def comfyui_state(handle: AdapterHandle) -> dict[str, torch.Tensor]:
    """The LoRA as ComfyUI reads it: PEFT keys, an `.alpha` per module, bias changes."""
    alpha = float(handle.config["lora_alpha"])
    state: dict[str, torch.Tensor] = {}
    for key, tensor in handle.state_dict().items():
        module = PEFT_PREFIX + original_name(_module_of(key))
        if is_lora_key(key):
            state[PEFT_PREFIX + original_name(key)] = tensor
            state[f"{module}.alpha"] = torch.tensor(alpha)
        else:
            state[f"{module}.diff_b"] = tensor - handle.base_extras[key]
    return state


def write_comfyui_export(handle: AdapterHandle, folder: Path) -> Path:
    """`comfyui_lora.safetensors` in `folder` (LoRA only)."""
    if handle.kind != "lora":
        raise ValueError("the ComfyUI LoRA export is for LoRA adapters")
    metadata = {"format": "pt", "rank": str(handle.config["r"]), "alpha": str(handle.config["lora_alpha"])}
    return _save(folder, COMFYUI_FILE, comfyui_state(handle), metadata)


def lokr_original_state(state: dict[str, torch.Tensor], targets: list[str]) -> dict[str, torch.Tensor]:
    """LyCORIS tensors of modules `targets` (diffusers names) under the original names."""
    renames = {
        LYCORIS_PREFIX + name.replace(".", "_"): LYCORIS_PREFIX + original_name(name).replace(".", "_")
        for name in targets
    }
    out = {}
    for key, tensor in state.items():
        module, _, part = key.partition(".")
        if module not in renames:
            raise ValueError(f"LoKR tensor {key} belongs to no target module")
        out[f"{renames[module]}.{part}"] = tensor
    return out


def write_lokr_original(handle: AdapterHandle, folder: Path) -> Path:
    """`lokr_weights.safetensors` in the original module naming (LoKR only)."""
    if handle.kind != "lokr":
        raise ValueError("the original-naming LoKR export is for LoKR adapters")
    state = lokr_original_state(handle.state_dict(), handle.targets)
    metadata = {"algo": "lokr", "format": "lycoris", **{k: str(v) for k, v in handle.config.items()}}
    return _save(folder, LOKR_ORIGINAL_FILE, state, metadata)


def write_other_exports(handle: AdapterHandle, final: Path, info: dict) -> list[Path]:
    """Every export for other tools that suits the adapter, in the final checkpoint."""
    if handle.kind == "lokr":
        return [write_lokr_original(handle, final / LOKR_ORIGINAL_FOLDER)]
    return [
        write_peft_export(handle, final / PEFT_FOLDER, info),
        write_comfyui_export(handle, final / COMFYUI_FOLDER),
    ]
