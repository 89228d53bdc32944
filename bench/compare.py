"""Benchmark: the same song through our engine and through plain diffusers, in one run.

    python bench/compare.py                       # full-size 2B turbo, 10 s clip
    python bench/compare.py --size tiny           # the tiny test model (seconds)
    MAX_CUDA_VRAM=8 python bench/compare.py --duration 60   # on a GPU, as on an 8 GB card

Three ways to make one song with the same random-weight model, seed, steps and length:

- `ours`: `MusicEngine` under the tier's memory policy from `.env` and `MAX_CUDA_VRAM`
  (placement, INT8, compile, adaptive VAE decode), exactly as the radio runs it;
- `diffusers`: `AceStepPipeline` as a user would run it with everything on the device;
- `diffusers-offload`: the same with `enable_model_cpu_offload()` (needs a GPU).

Each way runs in a subprocess of its own, so that peak memory is its own: RSS of the
process on the CPU, `torch.cuda.max_memory_allocated` on a GPU. One warm-up song is made
first (it pays for torch.compile and lazy initialisation) and not counted. The table
gives seconds per stage (text encoders, DiT, VAE decode, and our file encoding, which
plain diffusers does not do), peak memory, and the ratio ours / theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project before bench/ (whose engine.py would shadow it)

MODES = ("ours", "diffusers", "diffusers-offload")
STAGES = ("text", "dit", "vae", "encode")
CAPTION = "synthwave, driving bass, analog pads, female vocals, nostalgic, 80s"
LYRICS = "\n".join(
    ["[Verse 1]", "city lights are fading slow", "rain is tapping on the glass"]
    + ["[Chorus]", "sing it loud into the night", "we are waves and we are light"]
    + ["[Verse 2]", "neon rivers run below", "every sign a silver flash"]
    + ["[Chorus]", "sing it loud into the night", "we are waves and we are light"]
)
SONG = {"bpm": 118, "key": "A minor", "time_signature": "4/4", "language": "en"}


def _build(size: str, dtype):
    if size == "tiny":
        from engine.checkpoint.tiny import build_tiny_pipeline

        return build_tiny_pipeline("turbo", seed=0).to(dtype=dtype)
    from full_size import build_full_size_pipeline

    return build_full_size_pipeline(dtype)


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1024**2
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_ours(pipe, policy, settings, args) -> list[dict[str, float]]:
    from engine.music_engine import MusicEngine
    from engine.spec import SongSpec

    engine = MusicEngine(settings, policy=policy, pipeline=pipe)
    spec = SongSpec(
        title="Compare",
        caption=CAPTION,
        lyrics=LYRICS,
        duration=args.duration,
        seed=args.seed,
        bpm=SONG["bpm"],
        key=SONG["key"],
        time_signature=SONG["time_signature"],
        language=SONG["language"],
    )
    runs = []
    for _ in range(args.runs + 1):  # the first is the warm-up
        track = engine.generate(spec, steps=args.steps)[0]
        runs.append({stage: track.timings[stage] for stage in STAGES})
    return runs[1:]


class _DiffusersClock:
    """Stage times of a plain `AceStepPipeline` call: text stages end when the
    condition encoder returns, the DiT ends when `vae.decode` is entered."""

    def __init__(self, pipe, device):
        import torch

        self.device = device
        self.marks: dict[str, float] = {}
        pipe.condition_encoder.register_forward_hook(lambda *_: self._mark("text"))
        decode = pipe.vae.decode

        def timed_decode(*a, **kw):
            self._mark("dit")
            return decode(*a, **kw)

        pipe.vae.decode = timed_decode
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)

    def _mark(self, name: str) -> None:
        self._sync(self.device)
        self.marks.setdefault(name, time.perf_counter())

    def now(self) -> float:
        self._sync(self.device)
        return time.perf_counter()


def _run_diffusers(pipe, device, args, offload: bool) -> list[dict[str, float]]:
    import torch

    from engine.spec import TIME_SIGNATURES

    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    clock = _DiffusersClock(pipe, device)
    runs = []
    for _ in range(args.runs + 1):
        clock.marks.clear()
        start = clock.now()
        pipe(
            prompt=CAPTION,
            lyrics=LYRICS,
            vocal_language=SONG["language"],
            audio_duration=float(args.duration),
            num_inference_steps=args.steps,
            shift=3.0,
            generator=torch.Generator("cpu").manual_seed(args.seed),
            bpm=SONG["bpm"],
            keyscale=SONG["key"],
            timesignature=TIME_SIGNATURES[SONG["time_signature"]],
        )
        end = clock.now()
        text, dit = clock.marks["text"], clock.marks["dit"]
        runs.append({"text": text - start, "dit": dit - text, "vae": end - dit, "encode": 0.0})
    return runs[1:]


def run_one(mode: str, args) -> dict:
    """Make the song `args.runs` times one way; returns mean stage times and peak memory."""
    import torch

    from engine.gpu.tiers import detect_device, resolve
    from engine.logs import setup_logging
    from engine.settings import load_settings

    setup_logging("WARNING")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    settings = load_settings(tracks_dir=args.out, max_length_max=max(args.duration, 60), default_duration=args.duration)
    policy = resolve(settings, detect_device(settings))
    device = torch.device(policy.device.torch_device)
    if mode == "diffusers-offload" and device.type != "cuda":
        return {"mode": mode, "skipped": "enable_model_cpu_offload() needs a GPU"}
    pipe = _build(args.size, getattr(torch, policy.dtype))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if mode == "ours":
        runs = _run_ours(pipe, policy, settings, args)
    else:
        runs = _run_diffusers(pipe, device, args, offload=mode == "diffusers-offload")
    stages = {s: sum(r[s] for r in runs) / len(runs) for s in STAGES}
    return {
        "mode": mode,
        "device": policy.device.name,
        "tier": policy.tier.name,
        "dtype": policy.dtype,
        "threads": torch.get_num_threads(),
        "seconds": stages,
        "total_s": sum(stages.values()),
        "peak_memory_mb": _peak_memory_mb(device),
        "peak_memory_kind": "GPU allocated" if device.type == "cuda" else "process RSS",
    }


def _child(mode: str, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--one",
        mode,
        "--size",
        args.size,
        "--duration",
        str(args.duration),
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--runs",
        str(args.runs),
        "--threads",
        str(args.threads),
        "--out",
        str(args.out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        return {"mode": mode, "skipped": "failed: " + " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print_table(results: list[dict], args) -> None:
    ran = [r for r in results if "skipped" not in r]
    first = ran[0] if ran else {}
    print(
        f"{args.size} model, {args.duration} s clip, {args.steps} steps, seed {args.seed}, "
        f"{args.runs} run(s) after one warm-up; device {first.get('device', '?')} "
        f"({first.get('tier', '?')}, {first.get('dtype', '?')}, {first.get('threads', '?')} "
        "threads)"
    )
    header = f"{'':18s}" + "".join(f"{s:>9s}" for s in (*STAGES, "total")) + f"{'peak MB':>11s}"
    print(header)
    for result in results:
        if "skipped" in result:
            print(f"{result['mode']:18s} skipped: {result['skipped']}")
            continue
        seconds = result["seconds"]
        cells = "".join(f"{seconds[s]:9.2f}" for s in STAGES) + f"{result['total_s']:9.2f}"
        print(f"{result['mode']:18s}{cells}{result['peak_memory_mb']:11.0f}")
    ours = next((r for r in ran if r["mode"] == "ours"), None)
    for theirs in (r for r in ran if r["mode"] != "ours"):
        if ours is None:
            break
        core = sum(ours["seconds"][s] for s in ("text", "dit", "vae"))
        their_core = sum(theirs["seconds"][s] for s in ("text", "dit", "vae"))
        print(
            f"ours / {theirs['mode']}: time {core / their_core:.2f} (text+DiT+VAE; "
            f"{ours['total_s'] / their_core:.2f} with our file encoding), peak memory "
            f"{ours['peak_memory_mb'] / theirs['peak_memory_mb']:.2f} "
            f"({ours['peak_memory_kind']})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="full")
    parser.add_argument("--duration", type=int, default=10, help="seconds of audio (default 10)")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps (turbo: 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="songs measured after the warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=Path("/tmp/radio-compare"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.duration <= 600:
        parser.error(f"--duration {args.duration} is not allowed: use 1 to 600 seconds")
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: allowed are {', '.join(MODES)}")
    results = [_child(mode, args) for mode in modes]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
