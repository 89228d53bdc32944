"""Attach a trainable LoRA (peft) or LoKR (LyCORIS) adapter to the DiT.

Targets. `--target-modules` takes projection names in the original ACE-Step
spelling (`q_proj k_proj v_proj o_proj`, the default), in diffusers spelling
(`to_q ... to_out.0`), other linear layers of a block (`gate_proj`), or full
module names as `estimate` writes them (`layers.3.cross_attn.to_v`).
`--attention-type` keeps the self-attention, cross-attention or both of every
layer. On the 2B model, `both` gives 24 x 2 x 4 = 192 modules, `self` or
`cross` 96.

Precision. The base weights stay in the run's precision (bf16/fp16 on a GPU)
and frozen; the adapter weights are made fp32 after injection (peft and
LyCORIS create them in the base layer's dtype), and autocast runs the matmuls
in 16 bits. Small updates therefore accumulate in fp32 instead of vanishing
(Side-Step cast the adapter to bf16 with the model).

Dropout. peft drops out the adapter's input. LyCORIS has no such dropout for
LoKR (it would print a warning per module and ignore it), so for LoKR
`--dropout` is LyCORIS's rank dropout: at each step that share of the update's
output rows is dropped and the rest scaled up, drawn from the global torch RNG
like peft's dropout (a checkpoint saves it, so resume stays exact).

`AdapterHandle.state_dict()` is what the exports are made from and what resume
restores; with `--bias all` it also holds the base model's trained biases,
whose values before training are kept in `AdapterHandle.base_extras` (the
ComfyUI export stores the change).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from training.config import ConfigError, TrainConfig

#: Original ACE-Step projection names -> diffusers names.
ORIGINAL_TO_DIFFUSERS = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "o_proj": "to_out.0"}
ATTENTION_BLOCKS = {
    "both": ("self_attn", "cross_attn"),
    "self": ("self_attn",),
    "cross": ("cross_attn",),
}
_LAYER = re.compile(r"layers[._](\d+)[._]")


def _blocks_of(name: str) -> str | None:
    for block in ("self_attn", "cross_attn"):
        if f".{block}." in f".{name}.":
            return block
    return None


def resolve_target_modules(transformer: nn.Module, attention_type: str, target_modules: list[str]) -> list[str]:
    """Full names of the linear layers to adapt, in model order."""
    linear = [n for n, m in transformer.named_modules() if isinstance(m, nn.Linear)]
    keep = ATTENTION_BLOCKS[attention_type]
    chosen: set[str] = set()
    unmatched = []
    for entry in target_modules:
        wanted = ORIGINAL_TO_DIFFUSERS.get(entry, entry)
        matches = [n for n in linear if n == wanted or n.endswith("." + wanted)]
        matches = [n for n in matches if _blocks_of(n) in (*keep, None)]
        if not matches:
            unmatched.append(entry)
        chosen.update(matches)
    if unmatched:
        leaves = sorted({n.split(".", 2)[-1] for n in linear if n.startswith("layers.0.")})
        raise ConfigError(
            [
                f"--target-modules {' '.join(unmatched)}: matches no linear layer of this "
                f"model with --attention-type {attention_type}. Allowed: "
                f"{', '.join(ORIGINAL_TO_DIFFUSERS)}, {', '.join(leaves)}, or full names "
                "such as layers.0.self_attn.to_q"
            ]
        )
    return [n for n in linear if n in chosen]


def layer_of(parameter_name: str) -> str:
    """`layers.3....` / `lycoris_layers_3_...` -> `layers.3`; anything else -> `other`."""
    match = _LAYER.search(parameter_name)
    return f"layers.{match.group(1)}" if match else "other"


@dataclass
class AdapterHandle:
    """The adapter attached to a transformer, whatever its kind."""

    kind: str
    transformer: nn.Module
    targets: list[str]
    config: dict = field(default_factory=dict)
    network: nn.Module | None = None  # the LyCORIS network for LoKR
    #: Trained tensors that are not adapter matrices (`--bias all`), as they were before.
    base_extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        if self.network is not None:
            return [(n, p) for n, p in self.network.named_parameters() if p.requires_grad]
        return [(n, p) for n, p in self.transformer.named_parameters() if p.requires_grad]

    def parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's tensors under the names its exported file uses."""
        if self.network is not None:
            return {k: v.detach().float().cpu() for k, v in self.network.state_dict().items()}
        from peft.utils import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.transformer)
        return {k: v.detach().float().cpu() for k, v in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore tensors written by `state_dict` (a checkpoint's adapter file)."""
        own = set(self.state_dict())
        if set(state) != own:
            missing, extra = sorted(own - set(state)), sorted(set(state) - own)
            raise ConfigError(
                [
                    "the checkpoint's adapter does not match this run's adapter settings "
                    f"(missing {missing[:3]}, unexpected {extra[:3]}): resume with the same "
                    "--adapter-type, --rank, --attention-type and --target-modules"
                ]
            )
        if self.network is not None:
            self.network.load_state_dict(state, strict=True)
            return
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(self.transformer, state)
        self._to_fp32()

    def _to_fp32(self) -> None:
        for parameter in self.parameters():
            parameter.data = parameter.data.float()

    def set_training(self, training: bool) -> None:
        self.transformer.train(training)
        if self.network is not None:
            self.network.train(training)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """The base model alone inside the block (for "before" clips); the adapter's
        weights are untouched. Trained biases (`--bias all`) stay as trained."""
        if self.network is not None:
            self.network.restore()
        else:
            self.transformer.disable_adapters()
        try:
            yield
        finally:
            if self.network is not None:
                self.network.apply_to()
            else:
                self.transformer.enable_adapters()


@contextlib.contextmanager
def _lycoris_targets(names: list[str]) -> Iterator[None]:
    """LyCORIS chooses modules through class-level presets; target exactly
    `names` for one network, then put the previous preset back."""
    from lycoris.wrapper import LycorisNetwork

    saved = {
        attr: getattr(LycorisNetwork, attr)
        for attr in (
            "ENABLE_CONV",
            "TARGET_REPLACE_MODULE",
            "TARGET_REPLACE_NAME",
            "MODULE_ALGO_MAP",
            "NAME_ALGO_MAP",
            "USE_FNMATCH",
            "TARGET_EXCLUDE_NAME",
        )
    }
    LycorisNetwork.apply_preset(
        {
            "enable_conv": False,
            "target_module": [],
            "target_name": list(names),
            "module_algo_map": {},
            "name_algo_map": {},
            "use_fnmatch": False,
            "exclude_name": [],
        }
    )
    try:
        yield
    finally:
        for attr, value in saved.items():
            setattr(LycorisNetwork, attr, value)


def _lokr_network(transformer: nn.Module, targets: list[str], config: TrainConfig) -> nn.Module:
    from lycoris.wrapper import LycorisNetwork

    with _lycoris_targets(targets):
        network = LycorisNetwork(
            transformer,
            multiplier=1.0,
            lora_dim=config.lokr_linear_dim,
            alpha=config.lokr_linear_alpha,
            rank_dropout=config.dropout,  # see the module docstring
            rank_dropout_scale=True,
            use_tucker=config.lokr_use_tucker,
            use_scalar=config.lokr_use_scalar,
            network_module="lokr",
            decompose_both=config.lokr_decompose_both,
            factor=config.lokr_factor,
            weight_decompose=config.lokr_weight_decompose,
            warn_on_unmatched=False,
        )
    if len(network.loras) != len(targets):
        raise ConfigError([f"LoKR could attach to {len(network.loras)} of {len(targets)} target modules"])
    network.apply_to()
    return network


def attach_adapter(transformer: nn.Module, config: TrainConfig) -> AdapterHandle:
    """Freeze the transformer and attach the adapter `config` describes, with
    fp32 weights on the transformer's device. Uses the global torch RNG for the
    initial weights (the trainer seeds it first)."""
    transformer.requires_grad_(False)
    targets = resolve_target_modules(transformer, config.attention_type, config.target_modules)
    device = next(transformer.parameters()).device
    if config.adapter_type == "lokr":
        network = _lokr_network(transformer, targets, config)
        network.to(device=device, dtype=torch.float32)
        network.requires_grad_(True)
        settings = {
            "linear_dim": config.lokr_linear_dim,
            "linear_alpha": config.lokr_linear_alpha,
            "factor": config.lokr_factor,
            "decompose_both": config.lokr_decompose_both,
            "use_tucker": config.lokr_use_tucker,
            "use_scalar": config.lokr_use_scalar,
            "weight_decompose": config.lokr_weight_decompose,
        }
        return AdapterHandle("lokr", transformer, targets, settings, network)
    from peft import LoraConfig

    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        bias=config.bias,
    )
    transformer.add_adapter(lora)
    handle = AdapterHandle(
        "lora",
        transformer,
        targets,
        {"r": config.rank, "lora_alpha": config.alpha, "bias": config.bias},
    )
    handle._to_fp32()
    handle.base_extras = {k: v for k, v in handle.state_dict().items() if not is_lora_key(k)}
    return handle


def is_lora_key(name: str) -> bool:
    """An adapter matrix (`lora_A`/`lora_B`), not a trained bias of the base model."""
    return ".lora_A." in name or ".lora_B." in name
