"""Which device, precision and attention kernels a run uses (seeds/003's auto rules).

- device `auto`: CUDA > MPS > XPU > CPU; an explicit device must exist.
- precision `auto`: bf16 on CUDA (fp16 on GPUs older than Ampere) and XPU,
  fp16 on MPS, fp32 on CPU. An explicit precision is obeyed, also on the CPU.
- attention `auto`: Flash Attention 2 where installed on an Ampere or newer
  GPU with a 16-bit precision, SDPA otherwise.

The precision is that of the frozen base weights and of autocast; the adapter
weights always stay fp32 (see training/trainable_adapters.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.gpu.tiers import flash_attention_installed
from training.config import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    attention: str

    @property
    def autocast(self) -> bool:
        return self.dtype != torch.float32

    @property
    def precision_name(self) -> str:
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)


def _xpu_available() -> bool:
    return hasattr(torch, "xpu") and torch.xpu.is_available()


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def resolve_device(name: str) -> torch.device:
    """The torch device for `--device`; a clear error when it is not there."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        if _xpu_available():
            return torch.device("xpu", 0)
        return torch.device("cpu")
    device = torch.device(name)
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": _mps_available(),
        "xpu": _xpu_available(),
    }
    if not available.get(device.type, False):
        raise ConfigError([f"--device {name}: no such device here; use auto, cpu or a device this machine has"])
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError([f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) are visible"])
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "xpu":
        return torch.bfloat16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def resolve_attention(name: str, device: torch.device, dtype: torch.dtype) -> str:
    flash_ok = (
        device.type == "cuda"
        and torch.cuda.get_device_capability(device)[0] >= 8
        and dtype != torch.float32
        and flash_attention_installed()
    )
    if name == "auto":
        return "flash_attention_2" if flash_ok else "sdpa"
    if name == "flash_attention_2" and not flash_ok:
        raise ConfigError(
            [
                "--attention-backend flash_attention_2 needs the flash-attn package, an "
                "Ampere or newer NVIDIA GPU and --precision bf16 or fp16: use auto or sdpa"
            ]
        )
    return name


def resolve_runtime(device: str, precision: str, attention: str) -> Runtime:
    """The run's device, precision and attention. On CUDA this also applies
    `MAX_CUDA_VRAM` (the process is capped at that card size, as the engine does)."""
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        vram_gb(torch_device)
    dtype = resolve_precision(precision, torch_device)
    return Runtime(torch_device, dtype, resolve_attention(attention, torch_device, dtype))


def autocast_context(runtime: Runtime):
    """bf16/fp16 autocast on the run's device; a no-op context for fp32."""
    return torch.autocast(device_type=runtime.device.type, dtype=runtime.dtype, enabled=runtime.autocast)


def vram_gb(device: torch.device) -> float | None:
    """Total memory of a CUDA device in GiB, honouring MAX_CUDA_VRAM (engine.gpu.tiers)."""
    if device.type != "cuda":
        return None
    from engine.gpu.tiers import detect_device
    from engine.settings import load_settings

    info = detect_device(load_settings(device=f"cuda:{device.index or 0}"))
    return info.vram_gb
