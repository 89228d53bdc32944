"""GPU tiers: detect VRAM, honour MAX_CUDA_VRAM, map to a tier, resolve the policy.

The tier table follows the ACE-Step 1.5 GPU compatibility guide (seeds/004).
"With LM" limits apply when the songwriter LLM shares the GPU
(`LLM_GPU_LAYERS` not 0), "without LM" when it runs on the CPU.

The 8 GB boundary. Upstream code puts `<= 8` GiB in tier 3, while its table
and its `MAX_CUDA_VRAM=8` example call an 8 GB card tier 4. A card sold as
"8 GB" reports 7.6-7.99 GiB through `total_memory`, because the driver keeps
some for itself, so a boundary at exactly 8.0 puts every real 8 GB card one
tier lower than its size. This project classifies a GPU by the card size it
was sold as: each tier starts 0.5 GiB below the nominal size it is named for
(7.5 GiB for 8 GB cards, 11.5 for 12 GB, ...). So an 8 GB card and
`MAX_CUDA_VRAM=8` both land in tier 4, as the guide's table says. Tier 3 is
left for cards reporting 6.5-7.5 GiB (e.g. `MAX_CUDA_VRAM=7`).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass, field

from engine.errors import DeviceError
from engine.settings import Settings

log = logging.getLogger(__name__)

#: GiB kept back from a simulated card, like a real driver does (upstream uses 0.5).
SIMULATION_RESERVE_GB = 0.5


@dataclass(frozen=True)
class Tier:
    """One row of the tier table. Durations in seconds."""

    name: str
    min_gb: float
    label: str
    max_duration_with_lm: int
    max_duration_without_lm: int
    max_batch_with_lm: int
    max_batch_without_lm: int
    cpu_offload: bool
    dit_offload: bool
    quantization: str | None
    songwriter_on_gpu: bool

    def max_duration(self, songwriter_on_gpu: bool) -> int:
        return self.max_duration_with_lm if songwriter_on_gpu else self.max_duration_without_lm

    def max_batch(self, songwriter_on_gpu: bool) -> int:
        return self.max_batch_with_lm if songwriter_on_gpu else self.max_batch_without_lm

    @property
    def streams_dit_offload(self) -> bool:
        """Whether DiT offload on this tier streams blocks (see `STREAMED_TIERS`)."""
        return self.name in STREAMED_TIERS


#: Ordered by `min_gb`; a GPU gets the last tier whose `min_gb` it reaches.
TIERS: tuple[Tier, ...] = (
    Tier("tier1", 0.0, "4 GB and less", 240, 360, 1, 1, True, True, "int8", False),
    Tier("tier2", 4.5, "6 GB", 480, 600, 1, 1, True, True, "int8", False),
    Tier("tier3", 6.5, "7 GB", 480, 600, 1, 2, True, True, "int8", True),
    Tier("tier4", 7.5, "8-11 GB", 480, 600, 2, 4, True, True, "int8", True),
    Tier("tier5", 11.5, "12-15 GB", 480, 600, 2, 4, True, False, "int8", True),
    Tier("tier6a", 15.5, "16-19 GB", 480, 600, 4, 8, True, False, "int8", True),
    Tier("tier6b", 19.5, "20-23 GB", 480, 480, 4, 8, False, False, None, True),
    Tier("unlimited", 23.5, "24 GB and more", 600, 600, 8, 8, False, False, None, True),
)

#: Tiers whose DiT offload streams blocks to the GPU (diffusers' group offloading)
#: instead of moving whole models: on 6 GB and less the DiT never fits whole.
STREAMED_TIERS = ("tier1", "tier2")

#: No GPU: tier 1's limits, run on the CPU, where offload and INT8 do not apply.
CPU_TIER = Tier("cpu", 0.0, "no GPU", 240, 360, 1, 1, False, False, None, False)


def tier_for_vram(gb: float | None) -> Tier:
    """The tier for a GPU reporting `gb` GiB; `None` (no GPU) gives `CPU_TIER`."""
    if gb is None:
        return CPU_TIER
    chosen = TIERS[0]
    for tier in TIERS:
        if gb >= tier.min_gb:
            chosen = tier
    return chosen


def tier_range(tier: Tier) -> str:
    """The reported-GiB range a tier covers, e.g. `7.5 <= GiB < 11.5`."""
    if tier is CPU_TIER:
        return "no CUDA GPU"
    index = TIERS.index(tier)
    upper = TIERS[index + 1].min_gb if index + 1 < len(TIERS) else None
    lower = f"{tier.min_gb:g} <= " if tier.min_gb > 0 else ""
    return f"{lower}GiB" + (f" < {upper:g}" if upper is not None else "")


@dataclass(frozen=True)
class DeviceInfo:
    """What the engine runs on. `vram_gb` is what the tier is chosen from."""

    kind: str  # "cuda" or "cpu"
    index: int | None
    name: str
    total_gb: float | None  # what the hardware reports
    vram_gb: float | None  # after MAX_CUDA_VRAM
    capability: tuple[int, int] | None
    simulated: bool

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index or 0}"


def detect_device(settings: Settings, *, apply_cap: bool = True) -> DeviceInfo:
    """Find the GPU named by `DEVICE` (or the first one), honouring `MAX_CUDA_VRAM`.

    With a CUDA GPU and `MAX_CUDA_VRAM=N` below its size, the process is capped
    at `N - 0.5` GiB with `torch.cuda.set_per_process_memory_fraction` (when
    `apply_cap`), so out-of-memory behaviour is that of a real N GB card. Without
    a GPU, `MAX_CUDA_VRAM` still selects the tier (so limits can be tried on a
    CPU machine) but nothing can be enforced.
    """
    import torch

    wanted = settings.device
    cuda = torch.cuda.is_available()
    if wanted.startswith("cuda") and not cuda:
        raise DeviceError(f"DEVICE={wanted} but no CUDA GPU is visible: use DEVICE=auto or cpu.")
    if wanted == "cpu" or not cuda:
        cap = settings.max_cuda_vram
        return DeviceInfo("cpu", None, "CPU", None, cap, None, cap is not None)

    index = int(wanted.split(":")[1]) if ":" in wanted else 0
    if index >= torch.cuda.device_count():
        raise DeviceError(f"DEVICE={wanted} but only {torch.cuda.device_count()} CUDA GPU(s) are visible.")
    props = torch.cuda.get_device_properties(index)
    total_gb = props.total_memory / 1024**3
    vram_gb, simulated = total_gb, False
    cap = settings.max_cuda_vram
    if cap is not None and cap < total_gb:
        vram_gb, simulated = cap, True
        if apply_cap:
            fraction = max(cap - SIMULATION_RESERVE_GB, 0.5) / total_gb
            torch.cuda.set_per_process_memory_fraction(fraction, index)
    elif cap is not None:
        log.warning("MAX_CUDA_VRAM=%g is not below this GPU's %.1f GiB; using the real size.", cap, total_gb)
    return DeviceInfo("cuda", index, props.name, total_gb, vram_gb, (props.major, props.minor), simulated)


@dataclass(frozen=True)
class EffectivePolicy:
    """The settings the engine actually uses: tier defaults with `.env` overrides."""

    device: DeviceInfo
    tier: Tier
    dtype: str
    attention: str
    cpu_offload: bool
    dit_offload: bool
    streamed_offload: bool
    quantization: str | None
    torch_compile: bool
    overlapped_decode: bool
    llm_gpu_layers: int
    songwriter_on_gpu: bool
    max_duration: int
    max_batch: int
    default_duration: int
    batch_size: int
    notes: tuple[str, ...] = field(default=())
    #: Setting -> why it has its value (a tier default, the card, or `.env`).
    reasons: dict[str, str] = field(default_factory=dict)
    #: One line per explicit setting that is unsafe on this tier (engine.gpu.advice).
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        data = asdict(self)
        data["tier"] = self.tier.name
        return data


def compile_works_with(*, streamed_offload: bool, quantization: str | None) -> bool:
    """Whether `torch.compile` can run with this memory policy. Not with streamed
    offload of INT8 weights: group offloading swaps the quantized weight tensors
    while the compiled graph runs, and torch refuses to swap a tensor that the
    graph's guards still reference ("Couldn't swap Linear.weight")."""
    return not (streamed_offload and quantization == "int8")


def flash_attention_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _attention_for(settings: Settings, device: DeviceInfo, notes: list[str], reasons: dict[str, str]) -> str:
    flash_ok = (
        device.kind == "cuda"
        and device.capability is not None
        and device.capability >= (8, 0)
        and flash_attention_installed()
    )
    reasons["ATTENTION_BACKEND"] = (
        "flash-attn is installed and the GPU is Ampere or newer"
        if flash_ok
        else "Flash Attention 2 needs the flash-attn package and an Ampere or newer GPU"
    )
    if settings.attention_backend == "flash_attention_2" and not flash_ok:
        notes.append(
            "ATTENTION_BACKEND=flash_attention_2 needs flash-attn and an Ampere or newer NVIDIA GPU; using sdpa."
        )
        return "sdpa"
    if settings.attention_backend == "auto":
        return "flash_attention_2" if flash_ok else "sdpa"
    reasons["ATTENTION_BACKEND"] = f"ATTENTION_BACKEND={settings.attention_backend} in .env"
    return settings.attention_backend


def resolve(settings: Settings, device: DeviceInfo) -> EffectivePolicy:
    """Combine the tier's defaults with what `.env` sets explicitly.

    Explicit values win, except where they cannot work (offload or INT8 without
    a GPU); each such case and each clamp is recorded in `notes`.
    """
    from engine.gpu import advice

    tier = tier_for_vram(device.vram_gb)
    notes: list[str] = []
    reasons: dict[str, str] = {}
    on_gpu = device.kind == "cuda"

    def choose(name: str, explicit: bool | None, default: tuple[bool, str]) -> bool:
        if explicit is None:
            reasons[name] = default[1]
            return default[0]
        if explicit and not on_gpu and name != "TORCH_COMPILE":
            notes.append(f"{name}=true has no effect without a GPU.")
            reasons[name] = f"{name}=true in .env, but there is no GPU"
            return False
        reasons[name] = f"{name}={'true' if explicit else 'false'} in .env"
        return explicit

    cpu_offload = choose(
        "CPU_OFFLOAD",
        settings.cpu_offload,
        advice.offload_choice("CPU_OFFLOAD", tier, on_gpu, tier.cpu_offload),
    )
    dit_offload = choose(
        "DIT_OFFLOAD",
        settings.dit_offload,
        advice.offload_choice("DIT_OFFLOAD", tier, on_gpu, tier.dit_offload),
    )
    torch_compile = choose("TORCH_COMPILE", settings.torch_compile, advice.compile_choice(device))

    reasons["QUANTIZATION"] = f"{tier.name} default"
    if settings.quantization == "auto":
        quantization = tier.quantization if on_gpu else None
        if not on_gpu:
            reasons["QUANTIZATION"] = "no GPU: INT8 needs one"
    elif settings.quantization == "int8" and not on_gpu:
        notes.append("QUANTIZATION=int8 needs a GPU; running unquantized on the CPU.")
        quantization = None
        reasons["QUANTIZATION"] = "QUANTIZATION=int8 in .env, but there is no GPU"
    else:
        quantization = None if settings.quantization == "none" else settings.quantization
        reasons["QUANTIZATION"] = f"QUANTIZATION={settings.quantization} in .env"

    streamed_offload = dit_offload and tier.streams_dit_offload
    if torch_compile and not compile_works_with(streamed_offload=streamed_offload, quantization=quantization):
        torch_compile = False
        reasons["TORCH_COMPILE"] = "cannot run with the DiT streamed to the GPU in INT8"
        notes.append(
            "TORCH_COMPILE is off: it cannot run with the DiT streamed to the GPU in INT8 "
            "(the offload swaps quantized weights inside the compiled graph). "
            "QUANTIZATION=none allows compiling."
        )

    if settings.llm_gpu_layers is None:
        llm_gpu_layers, reasons["LLM_GPU_LAYERS"] = advice.songwriter_choice(device, tier)
    else:
        llm_gpu_layers = settings.llm_gpu_layers
        reasons["LLM_GPU_LAYERS"] = f"LLM_GPU_LAYERS={llm_gpu_layers} in .env"
    songwriter_on_gpu = on_gpu and llm_gpu_layers != 0
    dtype, reasons["PRECISION"] = advice.dtype_choice(device, settings.precision, notes)

    max_duration = min(settings.max_length_max, tier.max_duration(songwriter_on_gpu))
    if max_duration < settings.max_length_max:
        notes.append(
            f"MAX_LENGTH_MAX={settings.max_length_max} is above {tier.name}'s limit of "
            f"{max_duration} s; tracks are capped at {max_duration} s."
        )
    default_duration = min(settings.default_duration, max_duration)
    if default_duration < settings.default_duration:
        notes.append(f"DEFAULT_DURATION={settings.default_duration} lowered to {default_duration}.")
    max_batch = tier.max_batch(songwriter_on_gpu)
    batch_size = min(settings.batch_size, max_batch)
    if batch_size < settings.batch_size:
        notes.append(
            f"BATCH_SIZE={settings.batch_size} is above {tier.name}'s limit of {max_batch}; using {batch_size}."
        )

    return EffectivePolicy(
        device=device,
        tier=tier,
        dtype=dtype,
        attention=_attention_for(settings, device, notes, reasons),
        cpu_offload=cpu_offload,
        dit_offload=dit_offload,
        streamed_offload=streamed_offload,
        quantization=quantization,
        torch_compile=torch_compile,
        overlapped_decode=settings.overlapped_decode,
        llm_gpu_layers=llm_gpu_layers,
        songwriter_on_gpu=songwriter_on_gpu,
        max_duration=max_duration,
        max_batch=max_batch,
        default_duration=default_duration,
        batch_size=batch_size,
        notes=tuple(notes),
        reasons=reasons,
        warnings=advice.unsafe_settings(settings, device, tier),
    )


@dataclass(frozen=True)
class ClampedRequest:
    duration: int
    batch: int
    duration_warnings: tuple[str, ...]
    batch_warnings: tuple[str, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.duration_warnings + self.batch_warnings


def clamp_request(duration: float, batch: int, policy: EffectivePolicy) -> ClampedRequest:
    """Clamp one request's duration and batch to the policy, saying what changed."""
    wanted = round(duration)
    clamped = max(10, min(wanted, policy.max_duration))
    duration_warnings = ()
    if clamped != wanted:
        duration_warnings = (
            f"asked for {duration:g} s; {policy.tier.name} allows 10 to {policy.max_duration} s, "
            f"so the track will be {clamped} s",
        )
    clamped_batch = max(1, min(int(batch), policy.max_batch))
    batch_warnings = ()
    if clamped_batch != batch:
        batch_warnings = (
            f"asked for a batch of {batch}; {policy.tier.name} allows 1 to {policy.max_batch}, "
            f"so {clamped_batch} will be made",
        )
    for warning in duration_warnings + batch_warnings:
        log.warning("Clamped request: %s", warning)
    return ClampedRequest(clamped, clamped_batch, duration_warnings, batch_warnings)
