"""Benchmark: seconds per 60 s of audio by stage, songs per minute, and peak memory.

    python bench/engine.py                      # tiny random model (CPU or GPU)
    python bench/engine.py --batch 1,2          # songs per minute at batch 1 and 2
    python bench/engine.py --size full          # 2B turbo, random weights (for a GPU)
    MAX_CUDA_VRAM=8 python bench/engine.py --size full   # as on an 8 GB card

The GPU policy (offload, INT8, compile) is the tier's, from `.env` and
MAX_CUDA_VRAM, exactly as the radio uses it. `--batch N` makes N different songs
per generation (`MusicEngine.generate_batch`, as BATCH_SIZE=N does); the tier's
batch limit is lifted to the largest N asked for, so the CPU (whose tier allows
1) can measure what batching gains. One warm-up generation per batch size (it
pays for torch.compile) is not counted; then the batch sizes take turns, run
after run, so a changing load on the machine touches them alike. Prints a
table; `--json` the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine.gpu.tiers import detect_device, resolve
from engine.logs import setup_logging
from engine.music_engine import MusicEngine
from engine.settings import load_settings
from engine.spec import SongSpec

STAGES = ("text", "dit", "vae", "encode")
LYRICS = "\n".join(
    ["[verse]", "city lights are fading slow", "rain is tapping on the glass"] * 4
    + ["[chorus]", "sing it loud into the night", "we are waves and we are light"] * 3
)


def build(size: str, dtype: torch.dtype):
    if size == "tiny":
        from engine.checkpoint.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline("turbo", seed=0)
        return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from full_size import build_full_size_pipeline, parameter_counts

    pipe = build_full_size_pipeline(dtype)
    counts = parameter_counts(pipe)
    print("parameters: " + ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in counts.items()))
    return pipe


def songs(duration: int, count: int, first_seed: int) -> list[SongSpec]:
    """`count` different songs: captions, keys and seeds differ, as a radio's do."""
    captions = ["synthwave, driving bass, female vocals, 80s", "lo-fi piano, soft rain, mellow"]
    keys = ["A minor", "F major"]
    return [
        SongSpec(
            title=f"Benchmark {first_seed + i}",
            caption=captions[i % 2],
            lyrics=LYRICS,
            bpm=120 - 10 * (i % 2),
            key=keys[i % 2],
            duration=duration,
            seed=first_seed + i,
        )
        for i in range(count)
    ]


def measure(engine: MusicEngine, batches: list[int], args: argparse.Namespace) -> list[dict]:
    """One warm-up per batch size, then `args.runs` rounds that each make one generation
    of every batch size in turn, so a changing load on the machine touches them alike."""
    warmups = {}
    for batch in batches:
        started = time.perf_counter()
        engine.generate_batch(songs(args.duration, batch, 1000), steps=args.steps)
        warmups[batch] = time.perf_counter() - started
    tracks: dict[int, list] = {batch: [] for batch in batches}
    walls = dict.fromkeys(batches, 0.0)
    for run in range(args.runs):
        for batch in batches:
            started = time.perf_counter()
            made = engine.generate_batch(songs(args.duration, batch, run * batch), steps=args.steps)
            walls[batch] += time.perf_counter() - started
            tracks[batch] += made
    return [summary(batch, tracks[batch], walls[batch], warmups[batch], args) for batch in batches]


def summary(batch: int, tracks: list, wall: float, warm: float, args) -> dict:
    per_minute = 60.0 / args.duration
    # Stage times are per generation (shared by its songs); encoding is per song.
    generations = [t for i, t in enumerate(tracks) if i % batch == 0]
    stages = {s: statistics.mean(t.timings[s] for t in generations) for s in STAGES[:3]}
    stages["encode"] = batch * statistics.mean(t.timings["encode"] for t in tracks)
    per_song = {s: v / batch * per_minute for s, v in stages.items()}
    peaks = [t.peak_memory_mb for t in tracks if t.peak_memory_mb is not None]
    return {
        "batch": batch,
        "batched_together": tracks[0].settings["batch"],
        "warmup_s": warm,
        "seconds_per_60s_by_stage": per_song,
        "seconds_per_60s": sum(per_song.values()),
        "songs_per_minute": len(tracks) * 60.0 / wall,
        "peak_gpu_memory_gb": max(peaks) / 1024 if peaks else None,
        "vae_decode": tracks[-1].settings["vae_decode"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--duration", type=int, default=60, help="seconds per song; figures are scaled to 60 s")
    parser.add_argument("--runs", type=int, default=3, help="generations per batch size")
    parser.add_argument("--batch", default="1", help="batch sizes, e.g. 1,2 (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="default: the turbo's 8")
    parser.add_argument("--out", type=Path, default=Path("/tmp/radio-bench"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    setup_logging("WARNING")

    settings = load_settings(tracks_dir=args.out, max_length_max=max(args.duration, 60))
    policy = resolve(settings, detect_device(settings))
    policy = dataclasses.replace(policy, max_batch=max(batches + [policy.max_batch]))
    build_start = time.perf_counter()
    pipe = build(args.size, getattr(torch, policy.dtype))
    engine = MusicEngine(settings, policy=policy, pipeline=pipe)
    print(f"built and prepared in {time.perf_counter() - build_start:.1f} s")
    results = measure(engine, batches, args)
    head = {
        "size": args.size,
        "device": policy.device.name,
        "tier": policy.tier.name,
        "placement": engine.placement,
        "quantization": policy.quantization or "none",
        "torch_compile": policy.torch_compile,
        "dtype": policy.dtype,
        "duration_s": args.duration,
        "runs": args.runs,
    }
    if args.json:
        print(json.dumps({**head, "results": results}, indent=2))
        return 0
    print(
        f"{args.size} model on {head['device']} ({head['tier']}, {head['dtype']}, "
        f"{head['placement']}, quantization {head['quantization']}, "
        f"compile {'on' if head['torch_compile'] else 'off'}); songs of {args.duration} s, "
        f"{args.runs} rounds of one generation per batch size, after one warm-up each"
    )
    for result in results:
        stages = result["seconds_per_60s_by_stage"]
        total = result["seconds_per_60s"]
        print(f"batch {result['batch']} (made together: {result['batched_together']}):")
        for stage in STAGES:
            print(f"  {stage:7s} {stages[stage]:8.3f} s per 60 s of audio")
        print(f"  total   {total:8.3f} s per 60 s of audio ({60.0 / total:.1f}x real time)")
        print(f"  songs per minute: {result['songs_per_minute']:.2f}")
        peak = result["peak_gpu_memory_gb"]
        print(f"  peak GPU memory: {peak:.2f} GB" if peak is not None else "  peak GPU memory: n/a")
    return 0


if __name__ == "__main__":
    sys.exit(main())
