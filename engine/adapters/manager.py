"""LoRA and LoKR adapters on a loaded pipeline, without reloading the base model.

Formats read:
- LoRA, diffusers naming (`transformer.layers.0.self_attn.to_q.lora_A.weight`,
  as `AceStepPipeline.save_lora_weights` writes it, alpha in the file's metadata);
- LoRA, original ACE-Step PEFT naming (`base_model.model.layers.0.self_attn.q_proj
  .lora_A.weight` in `adapter_model.safetensors`, with `adapter_config.json`
  holding rank and alpha);
- LoKR, LyCORIS naming (`lycoris_layers_0_self_attn_to_q.lokr_w1`, ...).

LoKR runs in LyCORIS's bypass mode: the layer's own output plus the adapter's,
never a rebuilt weight, because INT8 weights cannot be added to. Only LoKR with
weight decomposition (DoRA-style) needs the rebuilt weight, to normalise it; it
reads INT8 weights dequantized. The LoKR weights (a few MB) stay on the engine's
device, so layers moved in and out by the offload always find them there.

At most one adapter is active at a time (a station has one sound); others stay
loaded and can be switched to instantly. A file that cannot be loaded raises
`AdapterError` and leaves the engine exactly as it was.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from engine.errors import AdapterError

log = logging.getLogger(__name__)

ADAPTER_FILES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    kind: str  # "lora" or "lokr"
    path: Path
    scale: float


def find_weights_file(path: Path) -> Path:
    """The safetensors file of an adapter given as a file or a folder."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for name in ADAPTER_FILES:
            if (path / name).is_file():
                return path / name
        found = sorted(path.glob("*.safetensors"))
        if len(found) == 1:
            return found[0]
        raise AdapterError(
            f"no adapter weights in '{path}': expected one of {', '.join(ADAPTER_FILES)} or a single .safetensors file"
        )
    raise AdapterError(f"adapter '{path}' does not exist")


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(file))
    except Exception as exc:
        raise AdapterError(f"'{file}' is not a readable safetensors file: {exc}") from None
    if not state:
        raise AdapterError(f"'{file}' holds no tensors")
    return state


def detect_kind(state: dict[str, torch.Tensor]) -> str:
    if any(".lokr_w1" in k or ".lokr_w1_a" in k for k in state):
        return "lokr"
    if any(".lora_A." in k or ".lora_down." in k for k in state):
        return "lora"
    sample = ", ".join(sorted(state)[:3])
    raise AdapterError(f"not a LoRA or LoKR adapter (first keys: {sample})")


def _peft_metadata(weights: Path, state: dict[str, torch.Tensor]) -> dict | None:
    """LoRA config for the original PEFT format, whose alpha lives in adapter_config.json.

    Without it diffusers would assume alpha == rank and the adapter would play at
    the wrong strength (the "LoRA has no audible effect" reports)."""
    config_file = weights.parent / "adapter_config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
        rank, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AdapterError(f"'{config_file}' is not a valid PEFT adapter config: {exc}") from None
    # The state dict is already in diffusers naming here; peft accepts full module paths.
    targets = sorted({k.split(".lora_A.")[0].removeprefix("transformer.") for k in state if ".lora_A." in k})
    # diffusers reads per-component metadata under the component's prefix.
    return {
        "transformer.r": rank,
        "transformer.lora_alpha": alpha,
        "transformer.target_modules": targets,
    }


class AdapterManager:
    """Loads, switches, scales and unloads adapters on one pipeline's transformer."""

    def __init__(self, pipe, device: torch.device):
        """`device`: where the models run; LoKR weights are kept there."""
        self.pipe = pipe
        self.device = device
        self.loaded: dict[str, AdapterInfo] = {}
        self.active: str | None = None
        self._lokr: dict[str, object] = {}

    @property
    def transformer(self) -> torch.nn.Module:
        return self.pipe.transformer

    def load(self, path: Path, name: str | None = None, scale: float = 1.0, activate: bool = True) -> AdapterInfo:
        """Load an adapter and (by default) make it the active one."""
        path = Path(path)
        name = name or path.stem
        if not _NAME.fullmatch(name):
            raise AdapterError(f"adapter name '{name}' is not allowed: use 1-64 letters, digits, '.', '_' or '-'")
        if name in self.loaded:
            raise AdapterError(f"an adapter named '{name}' is already loaded; unload it first")
        _check_scale(scale)
        weights = find_weights_file(path)
        state = _read_state_dict(weights)
        kind = detect_kind(state)
        previous = self.active
        try:
            if kind == "lora":
                self._load_lora(weights, state, name)
            else:
                self._load_lokr(weights, state, name)
        except AdapterError:
            self._forget(name)
            self._activate(previous)
            raise
        except Exception as exc:
            self._forget(name)
            self._activate(previous)
            raise AdapterError(f"could not load adapter '{name}' from '{path}': {exc}") from None
        info = AdapterInfo(name, kind, path, scale)
        self.loaded[name] = info
        log.info("Loaded %s adapter '%s' from %s", kind, name, path)
        self._activate(name if activate else previous)
        return info

    def _load_lora(self, weights: Path, state: dict[str, torch.Tensor], name: str) -> None:
        state, metadata = self.pipe.lora_state_dict(str(weights), return_lora_metadata=True)
        if not metadata:
            metadata = _peft_metadata(weights, state)
        before = {n for n, _ in self.transformer.named_modules()}
        self.transformer.load_lora_adapter(
            state, prefix="transformer", adapter_name=name, metadata=metadata, _pipeline=self.pipe
        )
        if {n for n, _ in self.transformer.named_modules()} == before:
            raise AdapterError(f"adapter '{name}' matches no layer of this model")

    def _load_lokr(self, weights: Path, state: dict[str, torch.Tensor], name: str) -> None:
        from lycoris import create_lycoris_from_weights

        network, _ = create_lycoris_from_weights(0.0, str(weights), self.transformer, weights_sd=state)
        if not network.loras:
            raise AdapterError(f"LoKR adapter '{name}' matches no layer of this model")
        for module in network.loras:
            if module.wd:
                module._current_weight = functools.partial(_dequantized_weight, module)
            else:
                module.bypass_mode = True
        network.apply_to()
        network.to(device=self.device, dtype=_float_dtype(self.transformer))
        self._lokr[name] = network

    def _peft_adapters(self) -> set[str]:
        config = getattr(self.transformer, "peft_config", None) or {}
        return set(config)

    def _forget(self, name: str) -> None:
        """Remove whatever part of adapter `name` got attached."""
        if name in self._peft_adapters():
            self.transformer.delete_adapters(name)
        network = self._lokr.pop(name, None)
        if network is not None:
            network.restore()
        self.loaded.pop(name, None)

    def _activate(self, name: str | None) -> None:
        for other, network in self._lokr.items():
            network.set_multiplier(self.loaded[other].scale if other == name else 0.0)
        peft = self._peft_adapters()
        if name is not None and name in peft:
            self.transformer.enable_adapters()
            self.transformer.set_adapters([name], [self.loaded[name].scale])
        elif peft:
            self.transformer.disable_adapters()
        self.active = name

    def switch(self, name: str | None, scale: float | None = None) -> None:
        """Make `name` the active adapter (None: play the base model)."""
        if name is not None and name not in self.loaded:
            raise AdapterError(f"no adapter named '{name}' is loaded; loaded: {', '.join(self.loaded) or 'none'}")
        if name is not None and scale is not None:
            _check_scale(scale)
            self.loaded[name] = replace(self.loaded[name], scale=scale)
        self._activate(name)

    def unload(self, name: str) -> None:
        if name not in self.loaded:
            raise AdapterError(f"no adapter named '{name}' is loaded")
        self._forget(name)
        self._activate(None if self.active == name else self.active)
        log.info("Unloaded adapter '%s'", name)


def _check_scale(scale: float) -> None:
    if not (isinstance(scale, (int, float)) and 0.0 <= scale <= 4.0):
        raise AdapterError(f"adapter scale {scale!r} is not allowed: use a number from 0 to 4")


def _dequantized_weight(lokr_module) -> torch.Tensor:
    """The weight of the layer a LoKR module adapts, as a plain tensor (INT8
    weights dequantized): what a weight-decomposed LoKR rebuilds from."""
    return lokr_module.org_module[0].weight.detach().dequantize()


def _float_dtype(module: torch.nn.Module) -> torch.dtype:
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
