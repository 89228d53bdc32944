"""Benchmark: trainer steps per second and peak memory for the VRAM profiles.

    python bench/train.py                     # tiny random model (CPU, or the GPU if any)
    python bench/train.py --size full         # 2B turbo with random weights (for a GPU)
    python bench/train.py --profile minimal   # one profile only

Profiles (seeds/000): `standard` = LoRA rank 64 + AdamW; `minimal` = LoRA rank 16
+ AdamW8bit + encoder offload, run under `MAX_CUDA_VRAM=8` on a GPU (as an 8 GB
card). Both with gradient checkpointing, batch 1, one micro-batch per step. Each
profile runs in its own process, so its peak memory is its own: peak GPU memory
allocated on CUDA, peak resident memory of the process on the CPU. The data are
random preprocessed tensors of `--seconds` of audio (25 latent frames per
second) with `--tokens` condition tokens, read through the real data loader;
the first `--warmup` steps are not timed. Prints a table; `--json` the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

PROFILES = {
    "standard": {"rank": 64, "alpha": 128.0, "optimizer_type": "adamw", "offload_encoder": False},
    "minimal": {"rank": 16, "alpha": 32.0, "optimizer_type": "adamw8bit", "offload_encoder": True},
}
#: Run the minimal profile as on an 8 GB card (only enforceable on a GPU).
PROFILE_ENV = {"minimal": {"MAX_CUDA_VRAM": "8"}}


def build(size: str, dtype: torch.dtype):
    if size == "tiny":
        from engine.checkpoint.tiny import build_tiny_pipeline

        return build_tiny_pipeline("turbo", seed=0).to(dtype=dtype)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from full_size import build_full_size_pipeline

    return build_full_size_pipeline(dtype)


def write_dataset(folder: Path, tracks: int, frames: int, tokens: int, dim: int) -> Path:
    """Random tensors in the preprocessed format (what `--preprocess` writes)."""
    from training.storage import Manifest, file_sha256, write_tensors

    generator = torch.Generator().manual_seed(0)
    manifest = Manifest(folder, model="bench", condition_dim=dim, latent_channels=64)
    manifest.latents_per_second = 25.0
    for index in range(tracks):
        name = f"track-{index}.safetensors"
        write_tensors(
            folder / name,
            {
                "target_latents": torch.randn(frames, 64, generator=generator),
                "encoder_hidden_states": torch.randn(tokens, dim, generator=generator),
                "encoder_attention_mask": torch.ones(tokens, dtype=torch.int8),
                "context_latents": torch.randn(frames, 128, generator=generator),
            },
            {},
        )
        manifest.samples[name] = {
            "key": name,
            "file": name,
            "sha256": file_sha256(folder / name),
            "source": "bench",
            "frames": frames,
            "duration": frames / 25,
            "text": {"caption": "bench"},
        }
    manifest.save()
    return folder


def run_profile(args: argparse.Namespace) -> dict:
    """One profile in this process."""
    from engine.checkpoint.find import CheckpointInfo
    from training.config import TrainConfig
    from training.devices import resolve_runtime
    from training.loop import train
    from training.model import TrainingModel

    runtime = resolve_runtime(args.device, args.precision, "auto")
    pipe = build(args.size, runtime.dtype)
    for name in ("transformer", "condition_encoder", "text_encoder", "vae"):
        getattr(pipe, name).requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    info = CheckpointInfo(Path("(in memory)"), "diffusers", args.size, "turbo", False)
    model = TrainingModel(pipe, info, runtime)
    dim = int(pipe.transformer.config.encoder_hidden_size or pipe.transformer.config.hidden_size)
    frames = round(args.seconds * 25)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as temp:
        root = Path(temp)
        data = write_dataset(root / "data", args.tracks, frames, args.tokens, dim)
        steps = args.warmup + args.steps
        config = TrainConfig(
            checkpoint_dir=root,
            dataset_dir=data,
            output_dir=root / "out",
            device=args.device,
            precision=args.precision,
            batch_size=1,
            gradient_accumulation=1,
            epochs=steps,
            max_steps=steps,
            warmup_steps=0,
            num_workers=0,
            save_every=0,
            log_every=1000,
            log_heavy_every=0,
            gradient_checkpointing=True,
            **PROFILES[args.profile],
        )
        times: list[float] = []
        if runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(runtime.device)
        train(config, model=model, plain=True, on_step=lambda _: times.append(time.perf_counter()))
    timed = times[args.warmup :]
    seconds = (timed[-1] - times[args.warmup - 1]) / len(timed) if args.warmup else None
    if seconds is None:
        seconds = (timed[-1] - timed[0]) / max(1, len(timed) - 1)
    trainable = sum(p.numel() for n, p in pipe.transformer.named_parameters() if "lora_" in n and p.requires_grad)
    if runtime.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(runtime.device) / 1024**3
        peak_kind = "peak GPU memory allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        peak_kind = "peak resident memory of the process"
    return {
        "profile": args.profile,
        **PROFILES[args.profile],
        "size": args.size,
        "device": str(runtime.device),
        "precision": runtime.precision_name,
        "max_cuda_vram": os.environ.get("MAX_CUDA_VRAM"),
        "seconds_of_audio": args.seconds,
        "latent_frames": frames,
        "condition_tokens": args.tokens,
        "trainable_parameters": trainable,
        "timed_steps": len(timed),
        "seconds_per_step": seconds,
        "steps_per_second": 1.0 / seconds,
        "peak_gb": peak,
        "peak_kind": peak_kind,
        "torch_threads": torch.get_num_threads(),
    }


def run_all(args: argparse.Namespace) -> list[dict]:
    """Each profile in its own process (so each has its own peak memory)."""
    results = []
    for profile in PROFILES:
        env = dict(os.environ)
        if torch.cuda.is_available() and args.device != "cpu":
            for key, value in PROFILE_ENV.get(profile, {}).items():
                env.setdefault(key, value)
        command = [sys.executable, __file__, "--profile", profile, "--json"] + [
            f"--{name.replace('_', '-')}={getattr(args, name)}"
            for name in (
                "size",
                "device",
                "precision",
                "seconds",
                "tokens",
                "tracks",
                "steps",
                "warmup",
                "torch_threads",
            )
        ]
        out = subprocess.run(command, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stdout + out.stderr)
            raise SystemExit(f"profile {profile} failed")
        results.append(json.loads(out.stdout[out.stdout.index("{") :]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--profile", choices=tuple(PROFILES), default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per sample")
    parser.add_argument("--tokens", type=int, default=400, help="condition tokens per sample")
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    if args.profile is not None:
        import logging

        logging.disable(logging.WARNING)
        result = run_profile(args)
        print(json.dumps(result, indent=2) if args.json else result)
        return 0
    results = run_all(args)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    first = results[0]
    print(
        f"{args.size} model on {first['device']} ({first['precision']}), "
        f"{args.seconds:g} s of audio per sample ({first['latent_frames']} latent frames), "
        f"{args.tokens} condition tokens, batch 1, gradient checkpointing on, "
        f"{args.steps} timed steps after {args.warmup}, {first['torch_threads']} torch thread(s)"
    )
    print(
        f"{'profile':10} {'adapter':16} {'optimizer':10} {'offload':8} {'trainable':>10} "
        f"{'steps/s':>8} {'s/step':>8} {'peak GB':>8}"
    )
    for r in results:
        adapter = f"LoRA r{r['rank']} a{r['alpha']:g}"
        print(
            f"{r['profile']:10} {adapter:16} {r['optimizer_type']:10} "
            f"{'on' if r['offload_encoder'] else 'off':8} {r['trainable_parameters']:>10,} "
            f"{r['steps_per_second']:8.2f} {r['seconds_per_step']:8.3f} {r['peak_gb']:8.2f}"
        )
    print(
        f"peak: {first['peak_kind']}"
        + (f"; MAX_CUDA_VRAM={results[-1]['max_cuda_vram']} for minimal" if results[-1]["max_cuda_vram"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
