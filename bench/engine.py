"""Benchmark: seconds per 60 s of audio by stage, and peak memory.

    python bench/engine.py                      # tiny random model (CPU or GPU)
    python bench/engine.py --size full          # 2B turbo, random weights (for a GPU)
    MAX_CUDA_VRAM=8 python bench/engine.py --size full   # as on an 8 GB card

The GPU policy (offload, INT8, compile) is the tier's, from `.env` and
MAX_CUDA_VRAM, exactly as the radio uses it. One warm-up song (it pays for
torch.compile) is not counted. Prints a table; `--json` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine.logs import setup_logging
from engine.pipeline import MusicEngine
from engine.settings import load_settings
from engine.spec import SongSpec
from engine.tiers import detect_device, resolve

STAGES = ("text", "dit", "vae", "encode")
LYRICS = "\n".join(
    ["[verse]", "city lights are fading slow", "rain is tapping on the glass"] * 4
    + ["[chorus]", "sing it loud into the night", "we are waves and we are light"] * 3
)


def build(size: str, dtype: torch.dtype):
    if size == "tiny":
        from engine.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline("turbo", seed=0)
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from full_size import build_full_size_pipeline, parameter_counts

    pipe = build_full_size_pipeline(dtype)
    counts = parameter_counts(pipe)
    print("parameters: " + ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in counts.items()))
    return pipe


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument(
        "--duration", type=int, default=60, help="seconds per song; figures are scaled to 60 s"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="default: the turbo's 8")
    parser.add_argument("--out", type=Path, default=Path("/tmp/radio-bench"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup_logging("WARNING")

    settings = load_settings(tracks_dir=args.out, max_length_max=max(args.duration, 60))
    policy = resolve(settings, detect_device(settings))
    build_start = time.perf_counter()
    pipe = build(args.size, getattr(torch, policy.dtype))
    engine = MusicEngine(settings, policy=policy, pipeline=pipe)
    print(f"built and prepared in {time.perf_counter() - build_start:.1f} s")
    spec = SongSpec(
        title="Benchmark", caption="synthwave, driving bass, female vocals, 80s",
        lyrics=LYRICS, bpm=120, key="A minor", duration=args.duration, seed=1,
    )  # fmt: skip
    warm_start = time.perf_counter()
    engine.generate(spec, steps=args.steps)
    warm = time.perf_counter() - warm_start
    runs = [
        engine.generate(spec.model_copy(update={"seed": i + 2}), steps=args.steps)[0]
        for i in range(args.runs)
    ]

    per_minute = 60.0 / args.duration
    stages = {s: statistics.mean(r.timings[s] for r in runs) * per_minute for s in STAGES}
    total = sum(stages.values())
    peaks = [r.peak_memory_mb for r in runs if r.peak_memory_mb is not None]
    result = {
        "size": args.size,
        "device": policy.device.name,
        "tier": policy.tier.name,
        "placement": engine.placement,
        "quantization": policy.quantization or "none",
        "torch_compile": policy.torch_compile,
        "dtype": policy.dtype,
        "duration_s": args.duration,
        "runs": args.runs,
        "warmup_s": warm,
        "seconds_per_60s_by_stage": stages,
        "seconds_per_60s": total,
        "realtime_factor": 60.0 / total,
        "peak_gpu_memory_gb": max(peaks) / 1024 if peaks else None,
        "vae_decode": runs[-1].settings["vae_decode"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.size} model on {result['device']} ({result['tier']}, {result['dtype']}, "
        f"{result['placement']}, quantization {result['quantization']}, "
        f"compile {'on' if result['torch_compile'] else 'off'})"
    )
    print(f"{args.runs} songs of {args.duration} s after one warm-up song ({warm:.1f} s)")
    for stage in STAGES:
        print(f"  {stage:7s} {stages[stage]:8.3f} s per 60 s of audio")
    print(
        f"  total   {total:8.3f} s per 60 s of audio ({result['realtime_factor']:.1f}x real time)"
    )
    peak = result["peak_gpu_memory_gb"]
    print(
        f"  peak GPU memory: {peak:.2f} GB" if peak is not None else "  peak GPU memory: n/a (CPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
