"""Benchmark of the station: gaps between tracks, buffer lead, event-loop lag.

    .venv/bin/python -m bench.station --tracks 20 --speed 4

Runs the real radio as `python -m bot.local` does (SQLite store, the GPU
worker process, one station, the clock player) with the tiny random-weight
checkpoint (built in a temporary folder unless `--checkpoint` is given) and
prints:

- gap: seconds from the end of one track to the start of the next, for the
  transitions where a finished track was waiting (a healthy buffer), and for
  all transitions (underruns included);
- buffer lead: at each track start, how many finished tracks (and seconds of
  audio) were waiting behind it;
- event-loop lag: a task asks to wake every 5 ms the whole time; the lag is
  how late it woke (p50, p99, max), i.e. how long the loop was kept busy;
- generation: seconds per song in the worker, and underruns.

`--baseline SECONDS` only measures the lag of an idle event loop in this
process for that long (no radio): what the machine itself adds.

`--speed` plays faster than real time, so the run is short and the worker
generates without pause; with the tiny model a 10 s song takes about a
second, so speeds up to ~5 keep the buffer full on a small CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.local import LocalPlayer, PlayedTrack
from bot.settings import load_bot_settings
from bot.station import StationConfig
from bot.station.manager import StationManager
from bot.store import Store
from engine.worker.client import WorkerClient
from engine.worker.process import WorkerConfig

TICK = 0.005
GUILD = 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def measure_lag(
    samples: list[tuple[float, bool]], stop: asyncio.Event, client: WorkerClient | None = None
) -> None:
    """Lag samples, each with whether the worker had a job in flight meanwhile."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time()
        busy = client is not None and bool(client.in_flight)
        await asyncio.sleep(TICK)  # the instrument: how late does the loop wake us?
        busy = busy or (client is not None and bool(client.in_flight))
        samples.append((loop.time() - asked - TICK, busy))


def describe_lag(samples: list[float]) -> str:
    ms = 1000
    return (
        f"{len(samples)} samples: p50 {percentile(samples, 50) * ms:.2f} ms, "
        f"p99 {percentile(samples, 99) * ms:.2f} ms, max {max(samples) * ms:.2f} ms"
    )


async def run(args: argparse.Namespace, root: Path, checkpoint: Path) -> None:
    env = root / "empty.env"
    env.write_text("")
    settings = load_bot_settings(
        env,
        checkpoint_dir=checkpoint,
        data_dir=root / "data",
        tracks_dir=root / "tracks",
        device="cpu",
        default_duration=args.duration,
        log_level="WARNING",
    )
    config = WorkerConfig.from_settings(
        settings, songwriter=args.songwriter, steps=args.steps, torch_threads=args.torch_threads
    )
    client = WorkerClient(config, max_in_flight=args.in_flight)
    manager = StationManager(
        Store.from_settings(settings),
        client,
        StationConfig.from_settings(settings, buffer_size=args.buffer),
    )
    started = time.perf_counter()
    await client.start()
    print(f"worker ready in {time.perf_counter() - started:.1f} s", flush=True)
    await manager.start()
    station = await manager.add_station(GUILD)
    await station.set_style(genre="synthwave")

    lead_tracks: list[int] = []
    lead_seconds: list[float] = []
    healthy: list[bool] = []
    done = asyncio.Event()
    ended = 0

    def on_play(line: PlayedTrack) -> None:
        waiting = station.buffered
        lead_tracks.append(len(waiting))
        lead_seconds.append(sum(r.duration for r in waiting))

    def on_end(_line: PlayedTrack, _complete: bool) -> None:
        nonlocal ended
        ended += 1
        healthy.append(bool(station.buffered))  # was the next track ready at this end?
        if ended >= args.tracks:
            done.set()

    # Fill the buffer first, as a station that has been on air for a while (a station makes
    # songs of its own only on air: a warm-up listener holds its first track meanwhile).
    await station.start(LocalPlayer(root / "warm-up", speed=0.01))
    while len(station.buffered) < args.buffer:
        await station.wait_changed()
    await station.stop()
    player = LocalPlayer(root / "out", speed=args.speed, on_play=on_play, on_end=on_end)
    lag: list[tuple[float, bool]] = []
    stop_lag = asyncio.Event()
    lagger = asyncio.get_running_loop().create_task(measure_lag(lag, stop_lag, client))
    await station.start(player)
    await done.wait()
    stop_lag.set()
    await lagger
    stats = await station.stats()
    await manager.close()
    manager.store.close()

    gaps = player.gaps[: args.tracks - 1]
    good = [gap for gap, ok in zip(gaps, healthy, strict=False) if ok]
    ms = 1000
    print(f"\ntracks played: {len(player.played)} x {args.duration} s at speed {args.speed}")
    if good:
        print(
            f"gap, buffer healthy ({len(good)}): p50 {statistics.median(good) * ms:.2f} ms, "
            f"p99 {percentile(good, 99) * ms:.2f} ms, max {max(good) * ms:.2f} ms"
        )
    if gaps:
        print(f"gap, all transitions ({len(gaps)}): max {max(gaps) * ms:.2f} ms")
    print(
        f"buffer lead at track start: min {min(lead_tracks)} / median "
        f"{statistics.median(lead_tracks):g} / max {max(lead_tracks)} tracks; "
        f"min {min(lead_seconds):.0f} s, median {statistics.median(lead_seconds):.0f} s of audio"
    )
    whole = [value for value, _ in lag]
    print(f"event-loop lag, whole run ({TICK * ms:.0f} ms timer), {describe_lag(whole)}")
    generating = [value for value, busy in lag if busy]
    if generating:
        print(f"event-loop lag while the worker had a job, {describe_lag(generating)}")
    print(
        f"generation per song: p50 {stats.generation_p50:.2f} s, p90 {stats.generation_p90:.2f} s "
        f"(real-time factor {stats.mean_real_time_factor:.1f}); underruns {stats.underruns}"
    )


async def baseline(seconds: float) -> None:
    samples: list[tuple[float, bool]] = []
    stop = asyncio.Event()
    lagger = asyncio.get_running_loop().create_task(measure_lag(samples, stop))
    await asyncio.sleep(seconds)  # the length of the measurement
    stop.set()
    await lagger
    idle = [value for value, _ in samples]
    print(f"event-loop lag of an idle loop for {seconds:g} s, {describe_lag(idle)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.station", description=__doc__)
    parser.add_argument("--tracks", type=int, default=20, help="tracks to play (>= 2)")
    parser.add_argument("--speed", type=float, default=4.0, help="times faster than real time")
    parser.add_argument("--duration", type=int, default=10, help="seconds per song")
    parser.add_argument("--buffer", type=int, default=2, help="BUFFER_SIZE")
    parser.add_argument("--in-flight", type=int, default=2, help="WORKER_MAX_IN_FLIGHT")
    parser.add_argument("--steps", type=int, default=8, help="diffusion steps")
    parser.add_argument("--songwriter", choices=["template", "model"], default="template")
    parser.add_argument("--torch-threads", type=int, help="CPU threads of the worker's torch (default: torch's)")
    parser.add_argument("--checkpoint", type=Path, help="default: a tiny one, built now")
    parser.add_argument("--baseline", type=float, metavar="SECONDS", help="only measure an idle loop's lag")
    args = parser.parse_args(argv)
    if args.baseline is not None:
        asyncio.run(baseline(args.baseline))
        return 0
    if args.tracks < 2:
        parser.error("--tracks must be 2 or more")
    with tempfile.TemporaryDirectory(prefix="bench-station-") as folder:
        root = Path(folder)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from engine.checkpoint.tiny import write_tiny_checkpoint

            checkpoint = write_tiny_checkpoint(root / "tiny")
        asyncio.run(run(args, root, checkpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
