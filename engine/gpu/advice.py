"""Why each default is what it is, and which explicit settings are unsafe on a tier.

Defaults follow the card's memory (the tier) *and* its compute capability:

- `torch.compile` needs Triton, which builds kernels for compute capability 7.0
  and newer only; on a GTX 10xx (6.x) compiling would fail on every start.
- bfloat16 runs natively from Ampere (8.0) on; older cards get float16.
- The 8 GB guide's GPU matrix keeps the songwriter on the CPU on the pre-Ampere
  8 GB cards it lists (RTX 2070 Super, 7.5; GTX 1070 Ti, 6.1) and puts it on the
  GPU on Ampere and newer (RTX 3060, 3070, 4060). The same holds for the other
  pre-Ampere cards of tiers 3 and 4 (up to 11 GB, e.g. an RTX 2080 Ti).

`unsafe_settings` names each explicit `.env` value that goes against what the
tier guide calls mandatory (offload and INT8 at 6 GB and less, no LM on the GPU
there), against the offload the tier and the 8 GB guide rely on (tiers 3-4),
or against what the card can run; one line each, with the tier's recommendation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.gpu.tiers import DeviceInfo, Tier
    from engine.settings import Settings

#: Triton (torch.compile's GPU backend) builds kernels for these and newer.
COMPILE_MIN_CAPABILITY = (7, 0)
#: Native bfloat16 (Ampere).
BF16_MIN_CAPABILITY = (8, 0)
#: Tiers where offload and INT8 are mandatory and the LM stays off the GPU (seeds/004).
MANDATORY_TIERS = ("tier1", "tier2")
#: Tiers whose CPU + DiT offload the 8 GB guide's strategy depends on.
OFFLOAD_TIERS = ("tier3", "tier4")
_PRECISIONS = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

Choice = tuple  # (value, why it was chosen)


def _capability(device: DeviceInfo) -> str:
    major, minor = device.capability or (0, 0)
    return f"{major}.{minor}"


def pre_ampere(device: DeviceInfo) -> bool:
    return device.capability is not None and device.capability < BF16_MIN_CAPABILITY


def dtype_choice(device: DeviceInfo, precision: str, notes: list[str]) -> Choice:
    """`PRECISION`, or by default bf16 on Ampere and newer, fp16 before, fp32 on the CPU."""
    on_cpu = device.kind == "cpu" or device.capability is None
    if precision == "fp16" and on_cpu:
        notes.append("PRECISION=fp16 does not run on the CPU; using fp32.")
        return "float32", "PRECISION=fp16 cannot run on the CPU"
    if precision != "auto":
        return _PRECISIONS[precision], f"PRECISION={precision} in .env"
    if on_cpu:
        return "float32", "the CPU runs float32"
    if pre_ampere(device):
        return "float16", (
            f"compute capability {_capability(device)} has no fast bfloat16 (Ampere, 8.0, and newer have)"
        )
    return "bfloat16", f"compute capability {_capability(device)} runs bfloat16 natively"


def offload_choice(name: str, tier: Tier, on_gpu: bool, wanted: bool) -> Choice:
    if not on_gpu:
        return False, "no GPU: everything runs on the CPU"
    what = {"CPU_OFFLOAD": "CPU offload", "DIT_OFFLOAD": "DiT offload"}[name]
    return wanted, f"{tier.name} default (the tier guide: {what} {'on' if wanted else 'off'})"


def compile_choice(device: DeviceInfo) -> Choice:
    if device.kind != "cuda":
        return False, "no GPU: compiling for the CPU does not pay for itself"
    if device.capability is not None and device.capability < COMPILE_MIN_CAPABILITY:
        return False, (
            f"compute capability {_capability(device)}: Triton, which torch.compile uses, needs 7.0 or newer"
        )
    return True, (
        f"compute capability {_capability(device)} (Triton needs 7.0); the first song after start-up compiles"
    )


def songwriter_choice(device: DeviceInfo, tier: Tier) -> Choice:
    """`LLM_GPU_LAYERS` by default: -1 (all layers on the GPU) or 0 (CPU)."""
    if device.kind != "cuda":
        return 0, "no GPU"
    if not tier.songwriter_on_gpu:
        return 0, f"{tier.name}: the tier guide keeps the LM off the GPU at 6 GB and less"
    if pre_ampere(device) and tier.name in OFFLOAD_TIERS:
        return 0, (
            f"compute capability {_capability(device)}: the 8 GB guide's GPU matrix runs the "
            "songwriter on the CPU on pre-Ampere 8 GB cards (GTX 1070 Ti, RTX 2070 Super)"
        )
    return -1, f"{tier.name}: the songwriter shares the GPU from tier 3 up"


def unsafe_settings(settings: Settings, device: DeviceInfo, tier: Tier) -> tuple[str, ...]:
    """One warning line per explicit setting that is unsafe here (see module docstring)."""
    found: list[tuple[str, str, str, str]] = []  # (key, value, why, recommended value)
    if tier.name in MANDATORY_TIERS:
        must = "the tier guide calls it mandatory at 6 GB and less"
        if settings.cpu_offload is False:
            found.append(("CPU_OFFLOAD", "false", must, "true"))
        if settings.dit_offload is False:
            found.append(("DIT_OFFLOAD", "false", must, "true"))
        if settings.quantization == "none":
            found.append(("QUANTIZATION", "none", must, "int8"))
        if settings.llm_gpu_layers not in (None, 0):
            why = "the tier guide keeps the LM off the GPU at 6 GB and less, for the DiT"
            found.append(("LLM_GPU_LAYERS", str(settings.llm_gpu_layers), why, "0"))
    elif tier.name in OFFLOAD_TIERS:
        why = (
            "the tier guide and the 8 GB guide keep it on below 12 GB; without it the models "
            "share the card with the songwriter and songs can run out of memory"
        )
        if settings.cpu_offload is False:
            found.append(("CPU_OFFLOAD", "false", why, "true"))
        if settings.dit_offload is False:
            found.append(("DIT_OFFLOAD", "false", why, "true"))
            if settings.quantization == "none":
                why = "with DIT_OFFLOAD=false the bf16 DiT (2.9 GB for the 2B model) stays on the GPU"
                found.append(("QUANTIZATION", "none", why, "int8"))
    if device.kind == "cuda" and device.capability is not None:
        card = f"compute capability {_capability(device)}"
        if settings.torch_compile and device.capability < COMPILE_MIN_CAPABILITY:
            why = f"{card} cannot build Triton kernels (7.0 and newer): every start fails to compile"
            found.append(("TORCH_COMPILE", "true", why, "false"))
        if settings.precision == "bf16" and pre_ampere(device):
            found.append(("PRECISION", "bf16", f"{card} has no native bfloat16 (slow)", "fp16"))
    return tuple(
        f"{key}={value} on {tier.name} ({tier.label}): {why}; {tier.name} recommends {key}={recommended} (the default)."
        for key, value, why, recommended in found
    )
