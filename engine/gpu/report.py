"""Human-readable views of the tier table and of the policy in force."""

from __future__ import annotations

from engine.gpu.tiers import CPU_TIER, TIERS, EffectivePolicy, Tier, compile_works_with, tier_range
from engine.songwriter.models import ModelChoice


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _offload(tier: Tier) -> str:
    if tier.dit_offload:
        return "CPU + DiT streamed" if tier.streams_dit_offload else "CPU + DiT"
    return "CPU" if tier.cpu_offload else "none"


def format_table() -> str:
    """The whole tier table, as `resolve` applies it."""
    header = (
        "tier",
        "reported VRAM",
        "card",
        "max length (LM / no LM)",
        "max batch (LM / no LM)",
        "offload",
        "quantization",
        "songwriter",
    )
    rows = [header]
    for tier in (*TIERS, CPU_TIER):
        rows.append(
            (
                tier.name,
                tier_range(tier),
                tier.label,
                f"{_minutes(tier.max_duration_with_lm)} / {_minutes(tier.max_duration_without_lm)}",
                f"{tier.max_batch_with_lm} / {tier.max_batch_without_lm}",
                _offload(tier),
                tier.quantization or "none",
                "GPU" if tier.songwriter_on_gpu else "CPU",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        "Each tier starts 0.5 GiB below the card size it is named for: an 8 GB card reports 7.6-7.99 GiB and is tier4."
    )
    lines.append("'LM' limits apply when the songwriter LLM shares the GPU (LLM_GPU_LAYERS != 0).")
    return "\n".join(lines)


def format_policy(policy: EffectivePolicy, songwriter: ModelChoice | None = None) -> str:
    """What was detected and the settings that will actually be used, and which
    songwriter model is used and why."""
    device = policy.device
    if device.kind == "cuda":
        seen = f"{device.name} (cuda:{device.index}), {device.total_gb:.2f} GiB"
        if device.simulated:
            seen += f", capped to {device.vram_gb:g} GB by MAX_CUDA_VRAM"
    elif device.simulated:
        seen = (
            f"CPU (no CUDA GPU); MAX_CUDA_VRAM={device.vram_gb:g} selects the tier of a GPU "
            f"with {device.vram_gb:g} GB, but the cap cannot be enforced without one"
        )
    else:
        seen = "CPU (no CUDA GPU)"
    tier = policy.tier
    yes_no = {True: "on", False: "off"}
    why = policy.reasons
    where = "GPU" if policy.songwriter_on_gpu else "CPU"

    def line(label: str, value: object, key: str | None = None) -> str:
        text = f"{label + ':':<19}{value}"
        return f"{text:<46}  ({why[key]})" if key in why else text

    lines = [
        f"device:            {seen}",
        f"tier:              {tier.name} ({tier.label}; {tier_range(tier)})",
        line("dtype", policy.dtype, "PRECISION"),
        line("attention", policy.attention, "ATTENTION_BACKEND"),
        line("CPU_OFFLOAD", yes_no[policy.cpu_offload], "CPU_OFFLOAD"),
        line(
            "DIT_OFFLOAD",
            yes_no[policy.dit_offload] + (" (blocks streamed to the GPU)" if policy.streamed_offload else ""),
            "DIT_OFFLOAD",
        ),
        line("QUANTIZATION", policy.quantization or "none", "QUANTIZATION"),
        line("TORCH_COMPILE", yes_no[policy.torch_compile], "TORCH_COMPILE"),
        line("OVERLAPPED_DECODE", yes_no[policy.overlapped_decode]),
        line("LLM_GPU_LAYERS", f"{policy.llm_gpu_layers} (songwriter on {where})", "LLM_GPU_LAYERS"),
        f"max track length:  {policy.max_duration} s",
        f"default length:    {policy.default_duration} s",
        f"max batch:         {policy.max_batch}",
        f"BATCH_SIZE:        {policy.batch_size}",
    ]
    if device.kind == "cpu" and device.simulated:
        compiles = compile_works_with(
            streamed_offload=tier.dit_offload and tier.streams_dit_offload,
            quantization=tier.quantization,
        )
        lines.append(
            f"on a real {device.vram_gb:g} GB GPU this tier uses: offload {_offload(tier)}, "
            f"quantization {tier.quantization or 'none'}, TORCH_COMPILE {yes_no[compiles]}, "
            f"songwriter on {'GPU' if tier.songwriter_on_gpu else 'CPU'}"
        )
    if songwriter is not None:
        lines.append(f"songwriter model:  {songwriter.name}")
        lines.append(f"  because:         {songwriter.reason}")
    lines += [f"note: {note}" for note in policy.notes]
    lines += [f"warning: {warning}" for warning in policy.warnings]
    return "\n".join(lines)
