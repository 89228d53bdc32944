"""`python -m engine tiers`: the policy in force, the tier table, the tier test, the boundaries.

    python -m engine tiers                       # this device, its tier, why each default
    python -m engine tiers --all | --json
    python -m engine tiers --test [--tiers 1,2,4] [--with-llm] [--skip-compile]
    python -m engine tiers --boundary [--tiers 4,5] [--with-llm]

`--test` and `--boundary` run each tier in a process of its own (engine.commands.tier_run,
engine.commands.tier_boundary), so each starts clean under its own `MAX_CUDA_VRAM` cap,
and a tier whose process dies is reported as such while the others go on.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from engine.gpu.report import format_policy, format_table
from engine.gpu.tiers import TIERS, detect_device, resolve
from engine.settings import Settings, load_settings

#: seeds/004's table: max duration (LM / no LM) in minutes and max batch (LM / no LM).
GUIDE = {tier.name: tier for tier in TIERS}
#: seeds/004's boundary analysis (its own measurements on its hardware).
GUIDE_CAPABILITIES = {"no-quant": "tier6b (20 GB)", "no-offload": "tier6b (20 GB)"}


def _child(connection, function: Callable, args: tuple) -> None:
    # The table reports what matters; library chatter at import would bury it.
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    from engine.commands.tier_run import TierSkipped

    try:
        result = ("ok", function(*args))
    except TierSkipped as exc:
        result = ("skip", str(exc))
    except Exception as exc:
        text = str(exc).strip().splitlines()
        result = ("error", f"{type(exc).__name__}: {text[0] if text else ''}"[:300])
    connection.send(result)
    connection.close()


def run_in_process(function: Callable, *args: Any) -> tuple[bool | None, Any]:
    """`function(*args)` in a spawned process: (True, result), (None, why the tier was
    skipped), or (False, what went wrong), also when the process dies (out of memory, a
    crash in native code)."""
    from engine.worker.process_handle import describe_exit

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, function, args))
    process.start()
    sender.close()
    try:
        status, value = receiver.recv()
    except EOFError:
        process.join()
        return False, f"the tier's process died ({describe_exit(process.exitcode)})"
    process.join()
    return {"ok": True, "skip": None}.get(status, False), value


def _model(settings: Settings, wanted: str) -> tuple[str, str]:
    """("checkpoint" or "tiny", a line saying which model runs)."""
    from engine.checkpoint.find import CheckpointError, find_checkpoint

    if wanted != "tiny":
        try:
            info = find_checkpoint(settings)
            return "checkpoint", f"model: {info.describe()}"
        except CheckpointError as exc:
            if wanted == "checkpoint":
                raise SystemExit(str(exc)) from None
    return "tiny", (
        "model: the tiny random-weight ACE-Step (no checkpoint in CHECKPOINT_DIR): it shows "
        "that each policy runs, not how much memory or time the real model needs"
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _minutes(seconds: int | None) -> str:
    if seconds is None:
        return "none"
    return f"{seconds / 60:g} min" if seconds % 30 == 0 else f"{seconds} s"


def _test(settings: Settings, tiers: list[str], options, on_gpu: bool) -> int:
    from engine.commands.tier_run import run_tier_test

    memory = "peak GPU (torch)" if on_gpu else "peak RSS (CPU process)"
    rows, failed = [], 0
    for tier in tiers:
        print(f"testing {tier} ...", file=sys.stderr, flush=True)
        ok, run = run_in_process(run_tier_test, settings, tier, options)
        if ok is None:
            rows.append((tier, "skip", "", "", "", "", "", run))
            continue
        if not ok or not run.ok:
            failed += 1
            rows.append((tier, "FAIL", "", "", "", "", "", run if not ok else run.message))
            continue
        used = run.settings
        rows.append(
            (
                tier,
                "pass",
                f"{run.seconds:.1f} s",
                f"{run.peak_mb / 1024:.2f} GB",
                str(used["placement"]),
                str(used["quantization"]),
                "on" if used["torch_compile"] else "off",
                f"songwriter {used['songwriter']}; adapter {used['adapter']}; {run.message}",
            )
        )
    header = ("tier", "result", "time", memory, "placement", "INT8", "compile", "notes")
    print(_table(header, rows))
    return 1 if failed else 0


def _boundary(settings: Settings, tiers: list[str], options, on_gpu: bool) -> int:
    from engine.commands.tier_boundary import find_boundary

    lm = options.with_llm
    rows, found, failed = [], {}, 0
    for tier in tiers:
        print(f"probing {tier} ...", file=sys.stderr, flush=True)
        ok, result = run_in_process(find_boundary, settings, tier, options)
        guide = GUIDE[tier]
        wanted = (_minutes(guide.max_duration(lm)), str(guide.max_batch(lm)))
        if not ok:
            failed += ok is False  # None: skipped (this GPU is smaller than the tier's card)
            rows.append((tier, wanted[0], "?", "?", wanted[1], "?", "?", result))
            continue
        found[tier] = result
        measured = (_minutes(result.measured_duration), str(result.measured_batch)) if on_gpu else ("n/a", "n/a")
        rows.append(
            (
                tier,
                wanted[0],
                _minutes(result.guard_duration),
                measured[0],
                wanted[1],
                str(result.guard_batch or 0),
                measured[1],
                f"guard sees {result.free_gb:.1f} GB free; {result.check}",
            )
        )
    mode = "with the songwriter on the GPU" if lm else "without the LM on the GPU"
    free = "measured" if on_gpu else "simulated: tier size - 0.5 - weights of the 2B turbo"
    print(f"Longest song (batch 1) and largest batch (60 s songs), {mode}; free memory {free}")
    header = ("tier", "guide length", "guard", "measured", "guide batch", "guard", "measured", "")
    print(_table(header, rows))
    print("\nBOUNDARY ANALYSIS (a 60 s song; estimate from the guard's formula)")
    analysis = []
    for name, label in (("no-quant", "No INT8 quantization"), ("no-offload", "No CPU offload")):
        fits = [tier for tier, result in found.items() if result.capabilities.get(name)]
        analysis.append((label, GUIDE_CAPABILITIES[name], fits[0] if fits else "none tested"))
    print(_table(("capability", "guide: min tier", "ours: min tier of those tested"), analysis))
    return 1 if failed else 0


def run_tiers_command(args: argparse.Namespace) -> int:
    from engine.commands.tier_run import RunOptions, gpu_available, parse_capability, parse_tiers

    if args.all:
        print(format_table())
        return 0
    settings = load_settings()
    if not (args.test or args.boundary):
        from engine.songwriter.models import choose_model

        policy = resolve(settings, detect_device(settings, apply_cap=False))
        choice = choose_model(settings, policy)
        if args.json:
            data = {**policy.as_dict(), "songwriter_model": choice.name}
            print(json.dumps({**data, "songwriter_reason": choice.reason}, indent=2, default=str))
        else:
            print(format_policy(policy, choice))
        return 0
    try:
        tiers = parse_tiers(args.tiers)
        capability = parse_capability(args.capability)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    on_gpu = gpu_available(settings)
    model, model_line = _model(settings, args.model)
    options = RunOptions(
        with_llm=args.with_llm,
        skip_compile=args.skip_compile,
        duration=args.duration,
        steps=args.steps,
        model=model,
        capability=capability,
    )
    where = (
        "GPU, each tier capped with MAX_CUDA_VRAM"
        if on_gpu
        else "no GPU: the CPU stands in for each tier's card (the policy is the card's; "
        "the memory figures are the CPU process's, not GPU memory)"
    )
    print(f"device: {where}\n{model_line}", flush=True)
    started = time.perf_counter()
    run = _boundary if args.boundary else _test
    code = run(settings, tiers, options, on_gpu)
    print(f"\n{len(tiers)} tier(s) in {time.perf_counter() - started:.0f} s")
    return code


def add_tiers_command(commands) -> None:
    tiers = commands.add_parser("tiers", help="show the device, its GPU tier and why each setting; test each tier")
    tiers.add_argument("--all", action="store_true", help="print the whole tier table")
    tiers.add_argument("--json", action="store_true", help="print the policy as JSON")
    mode = tiers.add_mutually_exclusive_group()
    mode.add_argument("--test", action="store_true", help="run each tier's policy: a short song")
    mode.add_argument("--boundary", action="store_true", help="find each tier's longest song and largest batch")
    tiers.add_argument("--tiers", help="which tiers, e.g. 1,4,6b (default: all)")
    tiers.add_argument("--with-llm", action="store_true", help="the songwriter writes, on the GPU where allowed")
    tiers.add_argument("--skip-compile", action="store_true", help="TORCH_COMPILE=false")
    tiers.add_argument("--duration", type=int, default=10, help="song length in s (default 10)")
    tiers.add_argument("--steps", type=int, default=None, help="diffusion steps")
    tiers.add_argument(
        "--model",
        choices=("auto", "checkpoint", "tiny"),
        default="auto",
        help="auto: CHECKPOINT_DIR when it holds a model, else the tiny random one",
    )
    tiers.add_argument("--capability", help="without a GPU: the compute capability to stand in for, e.g. 6.1")
    tiers.set_defaults(handler=run_tiers_command)
