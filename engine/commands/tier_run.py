"""One GPU tier's whole policy, run for real (`python -m engine tiers --test`).

For each tier the engine is built exactly as the radio builds it on a card of
the tier's size (`MAX_CUDA_VRAM`): placement, INT8, torch.compile, the songwriter
on or off the GPU. Then a random LoRA is loaded (adapters on), the songwriter
writes the spec when asked (`--with-llm`) and a short song is made.

On a GPU, each tier runs in its own process under `MAX_CUDA_VRAM`, which caps
the process with `torch.cuda.set_per_process_memory_fraction`, so running out of
memory happens as on that card; memory is torch's peak allocation during the
song. Without a GPU the CPU stands in for it, as the tests do: the policy is
the one resolved for a card of the tier's size, the models run on the CPU, and
memory is the peak resident set of the tier's process (model, data, songwriter),
which says the code path works, not how much GPU memory it would need.
"""

from __future__ import annotations

import dataclasses
import functools
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import EngineError
from engine.gpu.tiers import TIERS, DeviceInfo, EffectivePolicy, detect_device, resolve
from engine.settings import Settings
from engine.spec import SongSpec, StationStyle

#: The card size each tier is tested at: the `MAX_CUDA_VRAM` of seeds/004's examples.
TIER_SIZES = {
    "tier1": 4,
    "tier2": 6,
    "tier3": 7,
    "tier4": 8,
    "tier5": 12,
    "tier6a": 16,
    "tier6b": 20,
    "unlimited": 24,
}
#: The card the CPU stands in for when none is given: an Ada GPU (RTX 40xx).
DEFAULT_CAPABILITY = (8, 9)
TEST_SPEC = SongSpec(
    title="Tier test",
    caption="synthwave, driving bass, female vocals, 80s",
    lyrics="[Verse 1]\ncity lights are fading slow\n[Chorus]\nwe are waves and we are light",
    bpm=120,
    key="A minor",
    duration=10,
    seed=1,
)


def parse_tiers(text: str | None) -> list[str]:
    """`"1,4,6b"` -> `["tier1", "tier4", "tier6b"]`; None or "all": every tier."""
    if text is None or text.strip().lower() == "all":
        return list(TIER_SIZES)
    names = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        name = part.lower() if part.lower().startswith(("tier", "unl")) else f"tier{part.lower()}"
        if name not in TIER_SIZES:
            allowed = ", ".join(n.removeprefix("tier") for n in TIER_SIZES)
            raise ValueError(f"unknown tier {part!r}: allowed are {allowed} (or all)")
        names.append(name)
    return names


def parse_capability(text: str | None) -> tuple[int, int] | None:
    """`"6.1"` -> `(6, 1)`."""
    if text is None:
        return None
    try:
        major, minor = (int(x) for x in text.split("."))
    except ValueError:
        raise ValueError(f"--capability {text!r}: write it as MAJOR.MINOR, e.g. 6.1") from None
    return major, minor


@dataclass(frozen=True)
class RunOptions:
    with_llm: bool = False
    skip_compile: bool = False
    duration: int = 10
    steps: int | None = None
    #: "checkpoint" (CHECKPOINT_DIR) or "tiny" (random weights: noise, not music).
    model: str = "tiny"
    #: The compute capability of the card the CPU stands in for.
    capability: tuple[int, int] | None = None


@dataclass(frozen=True)
class TierRun:
    tier: str
    ok: bool
    message: str
    seconds: float = 0.0  # writing + singing the song, models loaded
    load_seconds: float = 0.0
    peak_mb: float | None = None
    settings: dict[str, object] = dataclasses.field(default_factory=dict)


class TierSkipped(EngineError):
    """This machine cannot test the tier (its GPU is smaller than the tier's card)."""


def gpu_available(settings: Settings) -> bool:
    return settings.device != "cpu" and torch.cuda.is_available()


def tier_policy(
    settings: Settings, tier: str, options: RunOptions
) -> tuple[Settings, EffectivePolicy, torch.device | None]:
    """Settings, policy and (on the CPU) the device standing in, for a card of the
    tier's size. With `--with-llm` the songwriter shares the GPU where the tier lets it."""
    size = TIER_SIZES[tier]
    with_lm = options.with_llm and next(t for t in TIERS if t.name == tier).songwriter_on_gpu
    changes: dict[str, object] = {"max_cuda_vram": size, "llm_gpu_layers": -1 if with_lm else 0}
    if options.skip_compile:
        changes["torch_compile"] = False
    settings = settings.model_copy(update=changes)
    if gpu_available(settings):
        device = detect_device(settings)  # caps this process at the tier's size
        if device.vram_gb is None or device.vram_gb < size:
            raise TierSkipped(f"this GPU has {device.total_gb:.1f} GiB, less than {size} GB")
        return settings, resolve(settings, device), None
    capability = options.capability or DEFAULT_CAPABILITY
    card = DeviceInfo("cuda", 0, f"CPU standing in for a {size} GB GPU", size, size, capability, True)
    return settings, resolve(settings, card), torch.device("cpu")


def build_engine(settings: Settings, policy: EffectivePolicy, device, model: str):
    """The engine for `policy`, with the configured checkpoint or the tiny model."""
    from engine.music_engine import MusicEngine

    pipeline = None
    if model == "tiny":
        from engine.checkpoint.tiny import build_tiny_pipeline

        pipeline = build_tiny_pipeline("turbo", seed=0).to(dtype=getattr(torch, policy.dtype))
    engine = MusicEngine(settings, policy=policy, pipeline=pipeline, device=device)
    if device is not None and engine.placement == "dit-offload":
        # diffusers re-installs model offload after loading a LoRA, on its default
        # device (the GPU); the CPU stands in for it here.
        pipe = engine.pipe
        pipe.enable_model_cpu_offload = functools.partial(pipe.enable_model_cpu_offload, device=device)
    return engine


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tier_test(settings: Settings, tier: str, options: RunOptions) -> TierRun:
    """The tier test of one tier; meant to run in a process of its own."""
    from engine.adapters.random_lora import write_random_lora

    started = time.perf_counter()
    settings, policy, device = tier_policy(settings, tier, options)
    engine = build_engine(settings, policy, device, options.model)
    with tempfile.TemporaryDirectory() as folder:
        adapter = write_random_lora(engine.pipe.transformer, Path(folder) / "lora")
        engine.load_adapter(adapter, name="tier-test")
        loaded = time.perf_counter()
        spec = TEST_SPEC.model_copy(update={"duration": options.duration})
        if options.with_llm:
            from engine.songwriter.writer import Songwriter, SongwriterConfig

            writer = Songwriter(SongwriterConfig.from_settings(settings, policy))
            style = StationStyle(genre="synthwave", max_duration=options.duration)
            spec = writer.compose("a night drive", style, duration=options.duration, seed=1).spec
        track = engine.generate(spec, out_path=Path(folder) / "song.ogg", steps=options.steps)[0]
        done = time.perf_counter()
    used = dict(track.settings)
    used["songwriter"] = ("GPU" if policy.songwriter_on_gpu else "CPU") if options.with_llm else "-"
    peak = track.peak_memory_mb if track.peak_memory_mb is not None else peak_rss_mb()
    message = "; ".join(track.warnings) or "ok"
    return TierRun(tier, True, message, done - loaded, loaded - started, peak, used)
