"""Each tier's boundaries: the longest song and the largest batch that fit (`--boundary`).

Two answers per tier, found by bisection (songs of 10 to 600 s at batch 1; batches
of 1 to 8 at 60 s):

- **guard**: what the engine's VRAM guard lets through. It estimates what a song
  needs (upstream's formula, engine.gpu.vram) against the free memory. On a GPU the
  free memory is measured (the process capped at the tier's size); without a GPU
  it is *simulated*: the tier's size, less the 0.5 GiB a driver keeps, less the
  weights that sit on the GPU while the DiT runs under the tier's placement (the
  released 2B turbo's sizes, or the loaded checkpoint's), less the songwriter's
  GGUF when it shares the GPU.
- **measured** (GPU only): songs really made, with the guard off, until one runs
  out of memory. Beside it, the guard's estimate for that song and the peak torch
  measured, so the estimate is checked against reality.

Without a GPU nothing can be measured: the CPU makes one song at the guard's
largest batch instead (`check`), which shows that the code path takes that batch.

The capability boundary (seeds/004's "Boundary Analysis": the smallest tier that
runs without INT8, and without offload) is estimated the same way for a 60 s song.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.commands.tier_run import (
    TEST_SPEC,
    TIER_SIZES,
    RunOptions,
    build_engine,
    peak_rss_mb,
    tier_policy,
)
from engine.gpu.tiers import SIMULATION_RESERVE_GB, EffectivePolicy
from engine.gpu.vram import FULL_SIZE, MARGIN_GB, Footprint, dit_stage_gb, estimate_gb, footprint_of
from engine.settings import Settings
from engine.spec import MAX_DURATION, MIN_DURATION

MAX_BATCH_PROBED = 8
#: Length at which the batch boundary and the capability boundary are probed.
PROBE_SECONDS = 60


def simulated_free_gb(
    tier_gb: float, policy: EffectivePolicy, placement: str, size: Footprint, songwriter_gb: float
) -> float:
    """What the guard would find free on a card of `tier_gb` while the DiT runs."""
    weights = dit_stage_gb(placement, policy.quantization, policy.dtype, size)
    songwriter = songwriter_gb if policy.songwriter_on_gpu else 0.0
    return tier_gb - SIMULATION_RESERVE_GB - weights - songwriter


def songwriter_size_gb(settings: Settings) -> float:
    """The songwriter GGUF's size (its weights on the GPU); 0.3 GB when not found."""
    path = settings.models_dir / settings.llm_model_name
    return path.stat().st_size / 1024**3 if path.is_file() else 0.3


def bisect_max(lo: int, hi: int, fits: Callable[[int], bool]) -> int | None:
    """The largest n in [lo, hi] with `fits(n)` (monotone: fits up to a point), or None."""
    if not fits(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def guard_fits(duration: float, batch: int, free_gb: float, *, xl: bool, cfg: bool) -> bool:
    return estimate_gb(duration, batch, xl=xl, cfg=cfg) + MARGIN_GB <= free_gb


@dataclass(frozen=True)
class TierBoundary:
    tier: str
    free_gb: float  # what the guard sees: measured on a GPU, simulated on the CPU
    guard_duration: int | None
    guard_batch: int | None
    measured_duration: int | None = None
    measured_batch: int | None = None
    check: str = ""  # the estimate against the measurement, or the CPU's check run
    #: Whether a 60 s song fits with the tier's policy, without INT8, without offload.
    capabilities: dict[str, bool] = dataclasses.field(default_factory=dict)


def _capabilities(
    tier_gb: float, policy: EffectivePolicy, size: Footprint, songwriter_gb: float, xl: bool
) -> dict[str, bool]:
    from engine.gpu.placement import choose_placement

    configs = {
        "default": (policy.cpu_offload, policy.dit_offload, policy.quantization),
        "no-quant": (policy.cpu_offload, policy.dit_offload, None),
        "no-offload": (False, False, None),
    }
    fits = {}
    for name, (cpu_offload, dit_offload, quantization) in configs.items():
        changed = dataclasses.replace(policy, quantization=quantization)
        placement = choose_placement(
            on_accelerator=True,
            cpu_offload=cpu_offload,
            dit_offload=dit_offload,
            streamed=dit_offload and policy.streamed_offload,
        )
        free = simulated_free_gb(tier_gb, changed, placement, size, songwriter_gb)
        fits[name] = guard_fits(PROBE_SECONDS, 1, free, xl=xl, cfg=False)
    return fits


def find_boundary(settings: Settings, tier: str, options: RunOptions) -> TierBoundary:
    """The boundaries of one tier; meant to run in a process of its own."""
    from engine.errors import GenerationError

    settings, policy, device = tier_policy(settings, tier, options)
    # The tier's own limits would clamp every probe: open them for the search.
    search = dataclasses.replace(policy, max_duration=MAX_DURATION, max_batch=MAX_BATCH_PROBED)
    engine = build_engine(settings, search, device, options.model)
    size = FULL_SIZE if options.model == "tiny" else footprint_of(engine.pipe)
    songwriter_gb = songwriter_size_gb(settings)
    xl, cfg = engine.is_xl, not engine.is_turbo
    tier_gb = TIER_SIZES[tier]
    on_cpu = device is not None
    writer = None
    if on_cpu:
        free = simulated_free_gb(tier_gb, policy, engine.placement, size, songwriter_gb)
    else:
        if policy.songwriter_on_gpu:  # its weights take their share of the card meanwhile
            from engine.songwriter.writer import Songwriter, SongwriterConfig

            writer = Songwriter(SongwriterConfig.from_settings(settings, policy))
            writer.load()
        free = (engine._free_gb() or 0.0) - engine._incoming_gb
    capabilities = _capabilities(tier_gb, policy, size, songwriter_gb, xl)

    def guard_duration(d: int) -> bool:
        return guard_fits(d, 1, free, xl=xl, cfg=cfg)

    def guard_batch(b: int) -> bool:
        return guard_fits(PROBE_SECONDS, b, free, xl=xl, cfg=cfg)

    longest = bisect_max(MIN_DURATION, MAX_DURATION, guard_duration)
    largest = bisect_max(1, MAX_BATCH_PROBED, guard_batch)
    peaks: dict[tuple[int, int], float] = {}

    def sings(duration: int, batch: int) -> bool:
        spec = TEST_SPEC.model_copy(update={"duration": duration})
        try:
            track = engine.generate(spec, batch=batch, steps=options.steps or 2)[0]
        except GenerationError as exc:
            if "out of GPU memory" not in str(exc):
                raise
            return False
        except torch.OutOfMemoryError:
            return False
        finally:
            engine._empty_cache()
        peaks[(duration, batch)] = (track.peak_memory_mb or 0.0) / 1024
        return True

    if on_cpu:
        started, batch = time.perf_counter(), largest or 1
        sings(options.duration, batch)
        check = (
            f"CPU made {batch} x {options.duration} s in {time.perf_counter() - started:.1f} s, "
            f"peak RSS {peak_rss_mb() / 1024:.2f} GB (no GPU: nothing measured)"
        )
        return TierBoundary(tier, free, longest, largest, check=check, capabilities=capabilities)

    engine.vram_guard = False
    measured_duration = bisect_max(MIN_DURATION, MAX_DURATION, lambda d: sings(d, 1))
    measured_batch = bisect_max(1, MAX_BATCH_PROBED, lambda b: sings(PROBE_SECONDS, b))
    check = ""
    if measured_duration is not None:
        needed = estimate_gb(measured_duration, 1, xl=xl, cfg=cfg) + MARGIN_GB
        check = (
            f"at {measured_duration} s the guard asks {needed:.1f} of {free:.1f} GB free; "
            f"torch peaked at {peaks[(measured_duration, 1)]:.1f} GB"
        )
    del writer
    return TierBoundary(tier, free, longest, largest, measured_duration, measured_batch, check, capabilities)
