"""Where each model lives: the memory policy applied to a loaded pipeline.

Four placements, from most to least GPU memory:
- `resident`: everything on the accelerator.
- `cpu-offload` (`CPU_OFFLOAD`): the DiT and condition encoder stay on the
  accelerator; the text encoder lives on the CPU and visits the accelerator
  for its stage only (`StageOffloader`). The VAE is placed by the decoder.
- `dit-offload` (`DIT_OFFLOAD`): every model lives on the CPU and moves to the
  accelerator for its stage (diffusers' model CPU offload), so between songs
  the GPU holds nothing of ACE-Step and the songwriter can use it.
- `streamed` (DIT offload on the smallest tiers): diffusers' group offloading
  with CUDA streams for the condition encoder and the DiT; their blocks are
  copied in just before they run, overlapping transfer and compute, so the DiT
  never sits whole on the GPU. The text encoder visits whole for its stage
  (`StageOffloader`): the pipeline looks up lyric tokens in its embedding table
  after its forward has returned, when group offloading would already have sent
  that table back to the CPU.

INT8 weight-only quantization (torchao) is applied to the DiT's linear layers
before compiling. LoRA adapters still apply on top: peft wraps torchao's INT8
linear layers and keeps the adapter weights unquantized.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

log = logging.getLogger(__name__)

PLACEMENTS = ("resident", "cpu-offload", "dit-offload", "streamed")
#: Pipeline components whose stage runs before the DiT; the VAE is handled by the decoder.
MODEL_COMPONENTS = ("text_encoder", "condition_encoder", "transformer")


def choose_placement(*, on_accelerator: bool, cpu_offload: bool, dit_offload: bool, streamed: bool) -> str:
    if not on_accelerator:
        return "resident"
    if dit_offload:
        return "streamed" if streamed else "dit-offload"
    return "cpu-offload" if cpu_offload else "resident"


class StageOffloader:
    """Keeps `offloaded` modules on the CPU and moves each to `device` when its
    forward starts; the forward of another offloaded module, or of `next_stage`
    (the model that runs after them), first sends the others back. No hook sits
    on the DiT, so a compiled DiT's graph never sees one."""

    def __init__(
        self,
        device: torch.device,
        offloaded: dict[str, torch.nn.Module],
        next_stage: torch.nn.Module,
    ):
        self.device = device
        self.offloaded = offloaded
        self.on_device: set[str] = set()
        self._handles = []
        for module in offloaded.values():
            module.to("cpu")
        for name, module in {**offloaded, "next stage": next_stage}.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name: str):
        def enter(_module: torch.nn.Module, _args: object) -> None:
            for other in list(self.on_device):
                if other != name:
                    self.offloaded[other].to("cpu")
                    self.on_device.discard(other)
            if name in self.offloaded and name not in self.on_device:
                self.offloaded[name].to(self.device)
                self.on_device.add(name)

        return enter

    def release(self) -> None:
        """Send every offloaded module back to the CPU (after a song)."""
        for name in list(self.on_device):
            self.offloaded[name].to("cpu")
        self.on_device.clear()

    def remove(self) -> None:
        self.release()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def apply_placement(pipe, placement: str, device: torch.device) -> StageOffloader | None:
    """Put the pipeline's models where `placement` says. Returns the offloader to
    `release()` after each song, if the placement has one."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement '{placement}': allowed are {', '.join(PLACEMENTS)}")
    models = {name: getattr(pipe, name) for name in MODEL_COMPONENTS}
    if placement == "resident":
        for module in models.values():
            module.to(device)
        return None
    text_encoder = {"text_encoder": models.pop("text_encoder")}
    if placement == "cpu-offload":
        for module in models.values():
            module.to(device)
        return StageOffloader(device, text_encoder, next_stage=pipe.condition_encoder)
    if placement == "dit-offload":
        pipe.model_cpu_offload_seq = "->".join(MODEL_COMPONENTS)
        pipe.enable_model_cpu_offload(device=device)
        return None
    from diffusers.hooks import apply_group_offloading

    for module in models.values():
        apply_group_offloading(
            module,
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=device.type == "cuda",
        )
    return StageOffloader(device, text_encoder, next_stage=pipe.condition_encoder)


def try_quantize_int8(module: torch.nn.Module) -> bool:
    """`quantize_int8`, or False with the reason logged when torchao is missing or cannot
    quantize here: the DiT then runs unquantized rather than not at all."""
    try:
        quantize_int8(module)
    except Exception as exc:
        log.warning(
            "QUANTIZATION=int8 could not be applied (%s: %s); the DiT runs unquantized. "
            "Set QUANTIZATION=none to skip the attempt.",
            type(exc).__name__,
            exc,
        )
        return False
    return True


def quantize_int8(transformer: torch.nn.Module) -> int:
    """INT8 weight-only quantization of the DiT's linear layers; returns how many."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    linears = [m for m in transformer.modules() if isinstance(m, torch.nn.Linear)]
    quantize_(
        transformer,
        Int8WeightOnlyConfig(),
        filter_fn=lambda m, _fqn: isinstance(m, torch.nn.Linear),
    )
    log.info("INT8 weight-only quantization applied to %d linear layers of the DiT", len(linears))
    return len(linears)


def compile_modules(modules: Iterable[torch.nn.Module], backend: object = "inductor") -> None:
    """`torch.compile` each module in place (the first song pays the compile time)."""
    for module in modules:
        module.compile(backend=backend)


def uncompile(module: torch.nn.Module) -> None:
    """Undo `compile_modules`: the module runs eagerly again."""
    module._compiled_call_impl = None
