"""`python -m engine doctor`: check this machine as the radio needs it.

One line per check: the NVIDIA driver and its CUDA version, whether the
installed torch runs on the card (checked with a tiny kernel, as setup does),
free GPU memory against the tier, ffmpeg and libopus, the checkpoint, and the
songwriter's GGUF model. Each line starts with ✔ (fine), ! (works, with
advice) or ✘ (broken), and says what to do when it is not ✔. The exit status
is 1 when a line is ✘.
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass

from engine.gpu.tiers import DeviceError, EffectivePolicy, detect_device, resolve
from engine.settings import Settings, load_settings
from engine.setup.nvidia_smi import Driver, DriverReading, read_driver
from engine.setup.torch_builds import (
    MIN_TORCH,
    TESTED_TORCH,
    TorchReport,
    judge,
    plan_builds,
    probe_torch,
    supported_torch,
)

OK, ADVICE, BROKEN = "✔", "!", "✘"
#: A DiT this narrow is `engine tiny-checkpoint`'s test model (the real ones are 2048+).
TINY_HIDDEN_SIZE = 256


@dataclass(frozen=True)
class Check:
    """One line of the report: its mark (OK, ADVICE or BROKEN), the topic and the text."""

    mark: str
    topic: str
    text: str

    def line(self) -> str:
        return f"{self.mark} {self.topic}: {self.text}"


def check_driver(reading: DriverReading) -> Check:
    if reading.driver:
        return Check(OK, "NVIDIA driver", reading.driver.describe())
    if reading.problem:
        return Check(
            BROKEN,
            "NVIDIA driver",
            f"{reading.problem}. Reinstall the NVIDIA driver (reboot after installing it), then run ./setup.sh again.",
        )
    return Check(
        ADVICE,
        "NVIDIA driver",
        "none (nvidia-smi is not on PATH): songs are made on the CPU, slowly. For an NVIDIA "
        "GPU, install its driver, then run ./setup.sh again.",
    )


def check_torch(report: TorchReport, driver: Driver | None) -> Check:
    described = f"{report.version} ({f'CUDA {report.cuda}' if report.cuda else 'CPU build'})"
    if report.import_error:
        return Check(BROKEN, "torch", f"{report.import_error}. Run ./setup.sh again.")
    if not supported_torch(report.version or "0"):
        return Check(
            ADVICE,
            "torch",
            f"{described} is outside what this project runs with ({MIN_TORCH} to "
            f"{TESTED_TORCH}): delete .venv and run ./setup.sh again.",
        )
    if driver is None:
        return Check(OK, "torch", f"{described}; no NVIDIA GPU here, so it runs on the CPU")
    reason = judge(report, driver)
    if reason is None:
        cards = ", ".join(f"{name} (sm_{cap[0]}{cap[1]})" for name, cap in report.devices)
        return Check(OK, "torch", f"{described} runs on {cards}: a test kernel ran")
    builds = plan_builds(driver).builds
    fix = (
        "run ./setup.sh again: it replaces a torch that does not fit this card "
        f"(or pick the build yourself: TORCH_CUDA={builds[0].tag} ./setup.sh)"
        if builds
        else "no torch build fits this driver and card: update the driver, or run on the CPU"
    )
    return Check(BROKEN, "torch", f"{reason}. To fix it, {fix}.")


def check_vram(settings: Settings, policy: EffectivePolicy, gpu_present: bool) -> Check:
    """Free GPU memory against the tier chosen from the card's size."""
    device, tier = policy.device, policy.tier
    if device.kind == "cpu":
        if settings.device == "cpu":
            return Check(OK, "GPU memory", "DEVICE=cpu: the GPU is not used; the CPU limits apply")
        if gpu_present:
            return Check(ADVICE, "GPU memory", "not measured: torch cannot use the GPU (see the torch line)")
        text = "no GPU, so the CPU limits apply"
        if device.simulated:
            text += f"; MAX_CUDA_VRAM={device.vram_gb:g} selects {tier.name}, but nothing can enforce it without a GPU"
        return Check(OK, "GPU memory", text)
    from engine.gpu.vram import MARGIN_GB, estimate_gb, free_vram_gb

    free = free_vram_gb(device.index or 0, settings.max_cuda_vram)
    needed = tier.min_gb or MARGIN_GB + estimate_gb(60)
    seen = f"{free:.1f} GiB free of {device.vram_gb:.1f} GiB"
    if free >= needed:
        return Check(OK, "GPU memory", f"{seen}: enough for {tier.name} ({tier.label})")
    advice = "close what else uses the GPU (nvidia-smi lists it)"
    if math.floor(free) >= 1:
        advice += f", or set MAX_CUDA_VRAM={math.floor(free)} to plan for what is free"
    return Check(
        ADVICE,
        "GPU memory",
        f"only {seen}; {tier.name} ({tier.label}) expects {needed:g} GiB: {advice}.",
    )


def check_ffmpeg() -> Check:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        return Check(
            BROKEN,
            "ffmpeg",
            f"{' and '.join(missing)} not found: install ffmpeg (sudo apt-get install ffmpeg; "
            "on Windows winget install Gyan.FFmpeg) and put it on PATH.",
        )
    encoders = subprocess.run(
        [shutil.which("ffmpeg") or "ffmpeg", "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if " libopus " not in encoders:
        return Check(
            BROKEN,
            "ffmpeg",
            "this ffmpeg has no libopus encoder, which the radio's .ogg files need: install an "
            "ffmpeg built with libopus (Debian's and Ubuntu's are).",
        )
    return Check(OK, "ffmpeg", f"{shutil.which('ffmpeg')} (with the libopus encoder)")


def check_libopus() -> Check:
    if sys.platform == "win32":
        return Check(OK, "libopus", "discord.py brings its own on Windows")
    found = ctypes.util.find_library("opus")
    if found is None:
        return Check(
            BROKEN,
            "libopus",
            "not found; Discord voice needs it: sudo apt-get install libopus0 (brew install opus on macOS).",
        )
    return Check(OK, "libopus", f"{found} (Discord voice)")


def check_checkpoint(settings: Settings) -> Check:
    from engine.checkpoint.find import CheckpointError, find_checkpoint

    try:
        info = find_checkpoint(settings)
    except CheckpointError as exc:
        return Check(BROKEN, "checkpoint", str(exc))
    config = json.loads((info.dit_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("hidden_size", TINY_HIDDEN_SIZE) < TINY_HIDDEN_SIZE:
        return Check(
            ADVICE,
            "checkpoint",
            f"{info.describe()} is complete, but it is a tiny random-weight test model that "
            "makes noise: for music run ./setup.sh --models (or python -m engine download).",
        )
    return Check(OK, "checkpoint", f"{info.describe()} is complete")


def check_songwriter(settings: Settings, policy: EffectivePolicy) -> Check:
    import llama_cpp

    from engine.songwriter.writer import Songwriter, SongwriterConfig

    config = SongwriterConfig.from_settings(settings, policy)
    writer = Songwriter(config)
    problem = writer.load()
    if problem:
        return Check(
            BROKEN,
            "songwriter",
            f"{problem}. Songs are written from templates until it loads (docs/songwriter.md).",
        )
    if writer.model_name != config.model:
        return Check(
            BROKEN,
            "songwriter",
            f"{'; '.join(writer.load_problems)}. The bundled {writer.model_name} writes "
            "instead; fix LLM_MODEL_NAME or the file (docs/songwriter.md).",
        )
    where = f"LLM_GPU_LAYERS={config.gpu_layers}"
    if config.gpu_layers and not llama_cpp.llama_supports_gpu_offload():
        return Check(
            ADVICE,
            "songwriter",
            f"{config.model} loads, but {where} asks for the GPU and this llama-cpp-python "
            "was built without CUDA: install the CUDA toolkit of torch's CUDA major version "
            "and run ./setup.sh again (LLAMA_CUDA=1 ./setup.sh forces the build).",
        )
    return Check(OK, "songwriter", f"{config.model} loads ({where})")


def run_checks(settings: Settings) -> list[Check]:
    reading = read_driver()
    report = probe_torch()
    checks = [check_driver(reading), check_torch(report, reading.driver)]
    try:
        policy = resolve(settings, detect_device(settings, apply_cap=False))
    except DeviceError as exc:
        checks.append(Check(BROKEN, "GPU memory", f"{exc}"))
        policy = None
    if policy is not None:
        checks.append(check_vram(settings, policy, reading.driver is not None))
    checks += [check_ffmpeg(), check_libopus(), check_checkpoint(settings)]
    if policy is not None:
        checks.append(check_songwriter(settings, policy))
    return checks


def _doctor(_args: argparse.Namespace) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # a Windows console may lack ✔ and ✘
        sys.stdout.reconfigure(errors="replace")
    checks = run_checks(load_settings())
    for check in checks:
        print(check.line())
    return 1 if any(check.mark == BROKEN for check in checks) else 0


def add_doctor_command(commands: argparse._SubParsersAction) -> None:
    """Register the `doctor` subcommand on the engine's CLI."""
    doctor = commands.add_parser("doctor", help="check the driver, torch on this GPU, memory, ffmpeg, the models")
    doctor.set_defaults(handler=_doctor)
