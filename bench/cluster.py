"""Benchmark of song workers on a Ray cluster: songs per minute with 1 and 2 workers.

    .venv/bin/python -m bench.cluster --songs 12

Starts a Ray cluster inside this process (`--address local`, this machine's
CPUs; or joins one with `--address auto` / `host:port`), then for each worker
count in `--workers` (default 1 and 2) creates that many song workers
(`engine.worker.cluster.backend.RayBackend`, the template songwriter, one torch thread
each), makes one warm-up song per worker, and then keeps every worker's slots
full until `--songs` songs are done. It prints songs per minute for each count
and the scaling efficiency (songs per minute per worker, against one worker).

With the tiny random-weight checkpoint (built in a temporary folder unless
`--checkpoint` is given) the workers run on CPUs (`--gpus-per-worker 0`); on a
GPU cluster pass `--gpus-per-worker 1 --address auto --checkpoint ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from engine.settings import load_settings
from engine.worker.cluster.backend import RayBackend
from engine.worker.cluster.connect import connect, disconnect
from engine.worker.cluster.workers import RayOptions
from engine.worker.process import WorkerConfig
from engine.worker.protocol import SongJob


async def songs_per_minute(args: argparse.Namespace, root: Path, workers: int) -> float:
    env = root / "empty.env"
    env.write_text("")
    settings = load_settings(
        env,
        checkpoint_dir=args.checkpoint,
        data_dir=root / "data",
        tracks_dir=root / "tracks",
        device=args.device,
        default_duration=args.duration,
        log_level="WARNING",
    )
    config = WorkerConfig.from_settings(settings, songwriter="template", steps=args.steps, torch_threads=1)
    options = RayOptions(
        address=args.address,
        workers=workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
    )
    backend = RayBackend(
        config, options, tracks_dir=settings.tracks_dir, adapters_dir=settings.adapters_dir, max_in_flight=2
    )
    started = time.perf_counter()
    await backend.start()
    while not all(w["ready"] for w in backend.workers):
        await backend.wait_changed()
    print(f"{workers} worker(s) ready in {time.perf_counter() - started:.1f} s", flush=True)
    count = 0

    async def make(songs: int) -> float:
        nonlocal count
        begun = time.perf_counter()
        pending = []
        for _ in range(songs):
            await backend.wait_for_slot()
            count += 1
            job = SongJob(job_id=f"song-{count}", theme="night drive", duration=args.duration)
            pending.append(backend.submit(job).future)
        await asyncio.gather(*pending)
        return time.perf_counter() - begun

    await make(workers)  # warm-up: each worker's first song
    seconds = await make(args.songs)
    made = [w["made"] for w in backend.workers]
    await backend.close()
    rate = args.songs / seconds * 60
    print(
        f"{workers} worker(s): {args.songs} songs in {seconds:.1f} s = {rate:.1f} songs/min "
        f"(songs per worker, warm-up included: {made})",
        flush=True,
    )
    return rate


async def run(args: argparse.Namespace, root: Path) -> None:
    options = {"num_cpus": args.cpus} if args.address == "local" else {}
    joined = connect(args.address, **options)
    try:
        rates = {n: await songs_per_minute(args, root, n) for n in args.workers}
    finally:
        disconnect(joined)
    base = rates[min(rates)] / min(rates)
    print(f"\n{args.duration} s songs, {args.steps} steps, one torch thread per worker:")
    for workers, rate in rates.items():
        efficiency = rate / (base * workers)
        print(f"  {workers} worker(s): {rate:.1f} songs/min, scaling efficiency {efficiency:.0%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--songs", type=int, default=12, help="songs to time per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=int, default=10, help="seconds per song")
    parser.add_argument("--steps", type=int, default=8, help="diffusion steps")
    parser.add_argument("--address", default="local", help="local, auto, host:port, ray://...")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of a local cluster")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--device", default="cpu", help="DEVICE of the workers")
    parser.add_argument("--checkpoint", type=Path, help="default: a tiny one, built now")
    args = parser.parse_args(argv)
    if args.songs < 1 or min(args.workers) < 1:
        parser.error("--songs and --workers must be 1 or more")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        root = Path(folder)
        if args.checkpoint is None:
            from engine.checkpoint.tiny import write_tiny_checkpoint

            args.checkpoint = write_tiny_checkpoint(root / "tiny")
        asyncio.run(run(args, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
