"""The exports for other tools play at the strength the adapter trained at:

- ComfyUI reads its LoRA file with a per-module `.alpha` (scale = alpha / rank,
  the rank being the rows of `lora_A`); done that way here, the weight change is
  the one diffusers' own loader makes from the diffusers export;
- a `--bias all` adapter's diffusers export loads in diffusers (its biases go
  beside it, and into the ComfyUI file as `.diff_b`);
- LoKR's original-naming export names the modules of the real 2B turbo model
  (its shapes fixture), with factors whose Kronecker product has each module's
  weight shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.checkpoint.tiny import build_tiny_pipeline
from tests.support.train_helpers import single_torch_thread  # noqa: F401 (autouse)
from training.config import TrainConfig
from training.export import write_adapter
from training.export_formats import (
    COMFYUI_FILE,
    LYCORIS_PREFIX,
    PEFT_PREFIX,
    lokr_original_state,
    original_name,
    write_comfyui_export,
)
from training.trainable_adapters import attach_adapter

RANK, ALPHA = 4, 8.0  # alpha = 2 x rank: read without alpha it would play at half strength
#: Key listing and config of the real 2B turbo (vendored from the shared fixtures).
REAL_2B = Path(__file__).parents[1] / "data" / "acestep-v15-original"


def trained_handle(bias: str = "none"):
    """A LoRA as training leaves it: random (nonzero) matrices, biases moved."""
    pipe = build_tiny_pipeline()
    torch.manual_seed(0)
    handle = attach_adapter(pipe.transformer, TrainConfig(rank=RANK, alpha=ALPHA, bias=bias))
    with torch.no_grad():
        for _, parameter in handle.named_parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return handle


def diffusers_deltas(folder: Path) -> dict[str, torch.Tensor]:
    """What diffusers' loader adds to each weight: loaded, fused and unloaded."""
    pipe = build_tiny_pipeline()
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    pipe.load_lora_weights(str(folder))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    after = pipe.transformer.state_dict()
    return {k: after[k] - before[k] for k in before if not torch.equal(after[k], before[k])}


def comfyui_deltas(file: Path, modules: dict[str, str]) -> dict[str, torch.Tensor]:
    """As ComfyUI applies a LoRA: up @ down times alpha / rank, per module; `modules`
    maps the original module names to this model's."""
    state = load_file(str(file))
    deltas = {}
    for key in state:
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removesuffix(".lora_A.weight")
        down, up = state[key], state[f"{module}.lora_B.weight"]
        scale = state[f"{module}.alpha"].item() / down.shape[0]
        name = modules[module.removeprefix(PEFT_PREFIX)]
        deltas[f"{name}.weight"] = scale * (up @ down)
    return deltas


@pytest.mark.parametrize("bias", ["none", "all"])
def test_the_comfyui_export_changes_the_weights_as_the_diffusers_export(bias: str, tmp_path: Path) -> None:
    handle = trained_handle(bias)
    write_adapter(handle, tmp_path / "diffusers", {})
    comfy = write_comfyui_export(handle, tmp_path / "comfyui")
    assert comfy.name == COMFYUI_FILE
    modules = {original_name(n): n for n, _ in handle.transformer.named_modules() if n}

    expected = diffusers_deltas(tmp_path / "diffusers")  # loads: no "Invalid LoRA checkpoint"
    got = comfyui_deltas(comfy, modules)
    assert len(got) == len(handle.targets) and got.keys() == expected.keys()
    for key, delta in got.items():
        torch.testing.assert_close(delta, expected[key], rtol=1e-4, atol=1e-6)
    alphas = {v.item() for k, v in load_file(str(comfy)).items() if k.endswith(".alpha")}
    assert alphas == {ALPHA}
    diff_b = {k: v for k, v in load_file(str(comfy)).items() if k.endswith(".diff_b")}
    if bias == "none":
        assert not diff_b
    else:  # each trained bias's change, under the original module name
        changed = {k: v - handle.base_extras[k] for k, v in handle.state_dict().items() if k in handle.base_extras}
        assert changed and len(diff_b) == len(changed)
        for key, delta in changed.items():
            module = PEFT_PREFIX + original_name(key.removesuffix(".bias"))
            torch.testing.assert_close(diff_b[f"{module}.diff_b"], delta)


def test_the_lokr_original_export_names_the_2b_turbo_modules() -> None:
    from engine.checkpoint.convert import TRANSFORMER, component_classes, component_configs

    shapes = json.loads((REAL_2B / "turbo-2b-state-dict-shapes.json").read_text())
    config = json.loads((REAL_2B / "turbo-2b-config.json").read_text())
    with torch.device("meta"):  # the real 2B model's modules, no memory
        transformer = component_classes()[TRANSFORMER](**component_configs(config)[TRANSFORMER])
    settings = TrainConfig(adapter_type="lokr", lokr_linear_dim=64, lokr_linear_alpha=128.0)
    handle = attach_adapter(transformer, settings)
    assert handle.network is not None
    state = lokr_original_state(handle.network.state_dict(), handle.targets)

    originals = {
        LYCORIS_PREFIX + key.removeprefix("decoder.").removesuffix(".weight").replace(".", "_"): shape
        for key, shape in shapes.items()
        if key.startswith("decoder.")
    }
    modules = {key.partition(".")[0] for key in state}
    assert len(modules) == len(handle.targets) == 2 * 4 * config["num_hidden_layers"]
    assert modules <= originals.keys(), sorted(modules - originals.keys())[:5]
    assert "lycoris_layers_0_self_attn_q_proj" in modules  # not ..._to_q
    assert "lycoris_layers_23_cross_attn_o_proj" in modules  # not ..._to_out_0
    for module in modules:
        w1, w2 = state[f"{module}.lokr_w1"], state.get(f"{module}.lokr_w2")
        if w2 is None:
            w2 = state[f"{module}.lokr_w2_a"] @ state[f"{module}.lokr_w2_b"]
        full = (w1.shape[0] * w2.shape[0], w1.shape[1] * w2.shape[1])
        assert list(full) == originals[module], module
